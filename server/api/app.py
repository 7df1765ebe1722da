"""Application factory: middleware (sessions, CSRF, security headers), routers, web pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from server.api.deps import AppServices
from server.api.routers import admin, auth, devices, events, evidence, exports
from server.auth import CSRF_HEADER, SESSION_COOKIE, SessionCodec, csrf_ok
from server.config import ServerConfig
from server.db.engine import Database
from server.evidence_store import EvidenceStore

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class SessionCsrfMiddleware(BaseHTTPMiddleware):
    """Loads the signed session cookie, enforces the CSRF token on every unsafe request,
    re-issues the cookie when the session changed, and adds security headers."""

    def __init__(self, app: Any, codec: SessionCodec, secure: bool) -> None:
        super().__init__(app)
        self.codec = codec
        self.secure = secure

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        data = self.codec.loads(request.cookies.get(SESSION_COOKIE))
        fresh = data is None
        if data is None:
            data = self.codec.new(None)
        request.state.session = data
        request.state.session_changed = fresh
        if request.method not in SAFE_METHODS and not csrf_ok(data.csrf, request.headers.get(CSRF_HEADER)):
            resp: Response = JSONResponse({"detail": f"CSRF token missing or wrong: send the {CSRF_HEADER} "
                                           "header with the token from GET /api/auth/session"}, status_code=403)
        else:
            resp = await call_next(request)
        if request.state.session_changed:
            resp.set_cookie(SESSION_COOKIE, self.codec.dumps(request.state.session), max_age=self.codec.max_age_s,
                            httponly=True, samesite="strict", secure=self.secure, path="/")
        h = resp.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("X-Frame-Options", "DENY")
        if request.url.path.startswith("/api/") and "Cache-Control" not in h:
            h["Cache-Control"] = "no-store"
        return resp


def create_app(cfg: ServerConfig, db: Database, store: EvidenceStore, collector: Any = None) -> FastAPI:
    app = FastAPI(
        title="roadeye review server",
        version="1",
        description="Violation events from roadeye edge boxes: search, evidence, review, exports.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    codec = SessionCodec(cfg.session_secret(), cfg.web.session_max_age_s)
    app.state.services = AppServices(cfg=cfg, db=db, store=store, codec=codec, collector=collector)
    app.add_middleware(SessionCsrfMiddleware, codec=codec, secure=cfg.web.cookie_secure)
    for r in (auth.router, events.router, evidence.router, devices.router, exports.router, admin.router):
        app.include_router(r)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        """Liveness for load balancers: database reachable, collector connected (when running)."""
        ok = True
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            db_state = "ok"
        except Exception as exc:  # report, do not crash the probe
            ok, db_state = False, f"error: {type(exc).__name__}"
        body: dict[str, Any] = {"ok": ok, "database": db_state}
        if collector is not None:
            body["collector_connected"] = collector.connected.is_set()
        return JSONResponse(body, status_code=200 if ok else 503)

    from server.web.views import LoginRequired, html_error, login_redirect
    from server.web.views import router as web_router

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """JSON for the API, a proper page for people."""
        if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
            return await http_exception_handler(request, exc)
        return html_error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        """Pages (not the API) send anonymous visitors to the login page and back."""
        return login_redirect(request)

    app.include_router(web_router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    return app
