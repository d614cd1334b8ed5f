"""The HTTP API and dashboard of a running pipeline (FastAPI on uvicorn): `create_app` builds the app over
any `pipeline.serve.requests.PipelineAPI`, `HttpServer` serves it in the pipeline's event loop."""

from pipeline.serve.http.app import create_app
from pipeline.serve.http.server import HttpServer, check_exposure

__all__ = ["HttpServer", "check_exposure", "create_app"]
