"""Adds the pages to the admin app: routes, static assets, sign-in redirects, headers, /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.cases import routes as case_routes
from services.review import routes as review_routes
from services.review.evidence import EvidenceUnavailable
from services.review.rules import Refused
from services.web import routes_login
from services.web.context import HERE, SignIn, WebContext, page

# Everything from this origin, nothing inline, no framing: pages show sensitive work.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

__all__ = ["WebContext", "add_pages"]


def add_pages(app: FastAPI, web: WebContext) -> None:
    """Serve the console and case pages from ``app``."""
    app.state.web = web
    for router in (routes_login.router, review_routes.router, case_routes.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(SignIn)
    async def sign_in(request: Request, exc: SignIn) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return page(request, "problem.html", code=409, problem=str(exc))

    @app.exception_handler(EvidenceUnavailable)
    async def unavailable(request: Request, exc: EvidenceUnavailable) -> Response:
        return Response(str(exc), status_code=502, media_type="text/plain")

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if not request.url.path.startswith("/static"):
            response.headers.update(SECURITY_HEADERS)
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(web.desk.metrics.exported), media_type=CONTENT_TYPE_LATEST)
