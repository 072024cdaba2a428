"""The admin HTTP API: banks, registrations, imports, exports, withdrawals and the audit log.

For a regulator's "eraser" service or a platform's trust-and-safety tools. Every call but the
probes and the OpenAPI description needs ``Authorization: Bearer <token>``; each token has a name,
which becomes the actor in the audit log. Changes go through ``admin/operations.py``, so they
travel through Kafka like the CLI's and are audited the same way. Images sent for registration are
hashed in memory and dropped. Calls that read the registry answer 503 until it has been replayed.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse

from services.admin import routes_banks, routes_entries, routes_withdrawal
from services.admin.context import AdminContext, Context
from services.web.app import WebContext, add_pages

probes = APIRouter(tags=["probes"])


def create_app(context: AdminContext, web: WebContext | None = None) -> FastAPI:
    """The API, wired to its collaborators; with ``web``, the review console and case pages too."""
    app = FastAPI(title="eraser admin", version="1", description=__doc__)
    app.state.context = context
    for router in (probes, routes_banks.router, routes_entries.router, routes_withdrawal.router):
        app.include_router(router)
    if web is not None:
        add_pages(app, web)
    return app


@probes.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    """The process is alive."""
    return "ok"


@probes.get("/readyz", response_class=PlainTextResponse)
def readyz(context: Context) -> PlainTextResponse:
    """The registry, banks and audit topics have been replayed."""
    if context.ready():
        return PlainTextResponse("ready")
    return PlainTextResponse("replaying the registry", status_code=503)
