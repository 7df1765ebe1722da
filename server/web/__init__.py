"""Review web app: Jinja2 templates and vanilla JS, served by the same FastAPI app."""
