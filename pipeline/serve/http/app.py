"""The HTTP face of a running pipeline: the FastAPI app (API, OpenAI-compatible route, dashboard).

    /                  the dashboard (pipeline/serve/static: plain HTML/CSS/JS, nothing from a CDN)
    /api/...           streams, questions, standing questions, history, live events, clips, status
    /v1/...            OpenAI-compatible chat completions and models
    /healthz /readyz   liveness (the process answers) and readiness (the pipeline is started)
    /openapi.json      the schema (no Swagger UI: it would load from a CDN)

`/api` and `/v1` need the bearer token when one is configured; the rest is open (it tells nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from pipeline.serve.http.auth import bearer
from pipeline.serve.http.errors import BodyLimit, install_handlers
from pipeline.serve.http.guards import RateLimit, SameOrigin
from pipeline.serve.http.openai import router as openai_router
from pipeline.serve.http.routes import router as api_router
from pipeline.serve.requests import PipelineAPI

STATIC = Path(__file__).resolve().parents[1] / "static"


def create_app(api: PipelineAPI, *, token: str | None = None, max_body_bytes: int = 64 * 1024,
               history: Any = None, clips: Any = None, status: Callable[[], dict] | None = None,
               hosts: frozenset[str] | None = None, origins: Iterable[str] = (),
               adds_per_minute: int = 30) -> FastAPI:
    """The app over `api`. `token`: the bearer token every `/api` and `/v1` request must carry (None: none).
    `hosts`: the names a request's Host may give (None: any); `origins`: other origins whose pages may change
    state (`pipeline.serve.http.guards`); `adds_per_minute`: stream and watch adds per client address."""
    app = FastAPI(title="OmniSIFT Stream", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Live audio-video question answering: streams, questions, alerts, history.")
    install_handlers(app)
    guard = [Depends(bearer(token))]
    adds = RateLimit(adds_per_minute, "adds")
    app.include_router(api_router(api, history=history, clips=clips, status=status, adds=adds), dependencies=guard)
    app.include_router(openai_router(api), dependencies=guard)

    @app.get("/healthz", summary="The server answers")
    async def healthz() -> dict:
        return {"ok": True}

    @app.get("/readyz", summary="The pipeline is started and takes questions")
    async def readyz() -> JSONResponse:
        ready = api.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(SameOrigin, hosts=hosts, origins=origins)  # added last: the outermost, runs first
    return app
