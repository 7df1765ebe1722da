"""FastAPI application: JSON API (one router per resource) and the review web app."""
