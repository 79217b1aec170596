"""The ``tunewise ui`` web app: Projects, Data, Review queue, Compare, Ladder and Monitor pages.

Security: projects are looked up by name in a dict built at start-up and their folders by names taken
from a listing (pages.child), so no request text becomes a path; the server binds to loopback unless
a token is given (serve's check_bind); with a token every request needs it (``?token=`` once sets a
cookie); every POST carries a CSRF token, an HMAC of a per-browser cookie under a per-process secret;
the Host header must name this server (a web page cannot reach it through DNS rebinding).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from tunewise.ui import pages
from tunewise.ui.jobs import Jobs

HERE = Path(__file__).parent
CSRF_COOKIE, TOKEN_COOKIE = "tunewise_csrf", "tunewise_token"


class UI:
    """Process state: the projects, the CSRF secret, loaded rungs for Compare, ladder jobs."""

    def __init__(self, projects: dict[str, Path], token: str | None):
        self.projects, self.token = projects, token
        self.secret = secrets.token_bytes(32)
        self.jobs = Jobs()
        self.served: dict[str, tuple[str, dict]] = {}  # project -> (report name, loaded rungs)
        self.flagged: dict[str, tuple[str, list[dict]]] = {}  # project -> (audit name, rows)
        self.model_lock = threading.Lock()

    def project(self, name: str) -> Path:
        if name not in self.projects:
            raise HTTPException(404, f"no project named {name!r}")
        return self.projects[name]

    def csrf_for(self, nonce: str) -> str:
        return hmac.new(self.secret, nonce.encode(), hashlib.sha256).hexdigest()

    async def form(self, request: Request) -> dict[str, str]:
        """The POSTed form, after checking its CSRF token against the cookie (403 otherwise)."""
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        nonce = request.cookies.get(CSRF_COOKIE, "")
        sent = form.get("csrf") or request.headers.get("x-csrf-token", "")
        if not nonce or not hmac.compare_digest(sent, self.csrf_for(nonce)):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        return form

    def rows(self, name: str) -> tuple[str | None, list[dict]]:
        """The latest audit's flagged rows of a project (cached per audit)."""
        found = pages.latest_audit(self.project(name))
        if found is None:
            return None, []
        audit_name, audit = found
        cached = self.flagged.get(name)
        if cached is None or cached[0] != audit_name:
            self.flagged[name] = cached = (audit_name, pages.flagged_records(self.project(name), audit))
        return cached


def create_app(projects: dict[str, Path], token: str | None = None, hosts: list[str] | None = None) -> FastAPI:
    ui = UI(projects, token)
    app = FastAPI(title="tunewise ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ui = ui
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if ui.token and not request.url.path.startswith("/static/"):
            given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or \
                request.headers.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest((given or "").encode(), ui.token.encode()):
                return PlainTextResponse("missing or wrong token: open the address `tunewise ui` printed", 401)
        nonce = request.cookies.get(CSRF_COOKIE)
        fresh = nonce is None
        nonce = nonce or secrets.token_hex(16)
        request.state.csrf = ui.csrf_for(nonce)
        response = await call_next(request)
        if fresh:
            response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict")
        if ui.token and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, ui.token, httponly=True, samesite="strict")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'self'")
        return response

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts or ["127.0.0.1", "localhost", "[::1]", "::1"])

    def page(request: Request, template: str, **ctx) -> HTMLResponse:
        return templates.TemplateResponse(request, template, {"projects": sorted(ui.projects), **ctx})

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        summaries = {n: pages.project_summary(p) for n, p in sorted(ui.projects.items())}
        return page(request, "index.html", summaries=summaries)

    @app.get("/p/{name}", response_class=HTMLResponse)
    def project(request: Request, name: str):
        return page(request, "project.html", name=name, s=pages.project_summary(ui.project(name)))

    @app.get("/p/{name}/{kind}/{folder}/{file}")
    def artefact(name: str, kind: str, folder: str, file: str):
        """A report, audit, data card or monitor page; the kind and file come from a fixed table."""
        allowed = {"reports": {"report.html", "report.md"}, "audits": {"audit.html"},
                   "datasets": {"DATACARD.md"}, "monitor": {"monitor.html"}}
        where = pages.child(ui.project(name), kind, folder) if file in allowed.get(kind, ()) else None
        if where is None or not (where / file).is_file():
            raise HTTPException(404, "no such page")
        media = "text/html" if file.endswith(".html") else "text/plain"
        return FileResponse(where / file, media_type=f"{media}; charset=utf-8")

    from tunewise.ui.routes_data import add_data_routes
    from tunewise.ui.routes_run import add_run_routes

    add_data_routes(app, ui, page)
    add_run_routes(app, ui, page)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return HTMLResponse(templates.get_template("error.html").render(status=exc.status_code, detail=exc.detail,
                                                                        projects=sorted(ui.projects)),
                            status_code=exc.status_code)

    return app


def project_names(folders: list[Path]) -> dict[str, Path]:
    """Name -> folder for each project (its folder name; a repeated name gets -2, -3, ...)."""
    from tunewise.config import ConfigError

    out: dict[str, Path] = {}
    for folder in folders:
        folder = Path(folder).resolve()
        if not (folder / "tunewise.yaml").is_file():
            raise ConfigError(f"{folder}: not a project (no tunewise.yaml)")
        name, n = folder.name, 1
        while name in out:
            n += 1
            name = f"{folder.name}-{n}"
        out[name] = folder
    return out


def run(app: FastAPI, host: str = "127.0.0.1", port: int = 8765) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")
