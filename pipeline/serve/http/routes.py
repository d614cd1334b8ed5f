"""The `/api` routes: streams (list, add, pause, resume, remove, newest picture, ask), standing questions,
the event history, the live event feed, alert clips and a status summary. Documented in docs/http-api.md;
the schema is served at /openapi.json."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

import pipeline.serve.http.sse as sse
from pipeline.config import StreamConfig, WatchConfig
from pipeline.messages import STREAM_NAME, Answer
from pipeline.serve.http.guards import RateLimit
from pipeline.serve.http.models import (
    MAX_ID,
    AskRequest,
    EventKind,
    StreamInfo,
    StreamList,
    Watch,
)
from pipeline.serve.requests import NotFound, PipelineAPI
from streams.errors import one_line

log = logging.getLogger(__name__)
StreamName = Annotated[str, Query(min_length=1, max_length=64, pattern=STREAM_NAME)]


def router(api: PipelineAPI, *, history: Any = None, clips: Any = None,
           status: Callable[[], dict] | None = None, adds: RateLimit | None = None) -> APIRouter:
    """The `/api` routes over a running pipeline; `history` (`pipeline.serve.history.History`) and
    `clips` (`pipeline.serve.clips.ClipWriter`) are None when off; `adds` bounds how often one client
    adds streams and standing questions (None: no bound)."""
    r = APIRouter(prefix="/api")
    _stream_routes(r, api, adds)
    _question_routes(r, api, adds)
    _record_routes(r, api, history, clips, status)
    return r


def stream_infos(snapshot: dict) -> list[StreamInfo]:
    return [StreamInfo.model_validate({"name": name, **s}) for name, s in snapshot["streams"].items()]


def _count_add(adds: RateLimit | None, request: Request) -> None:
    if adds is not None:
        adds.take(request.client.host if request.client is not None else "unknown")


def _stream_routes(r: APIRouter, api: PipelineAPI, adds: RateLimit | None) -> None:
    @r.get("/streams", response_model=StreamList, summary="Every stream with its state and live figures")
    async def list_streams() -> StreamList:
        snap = api.snapshot()
        return StreamList(streams=stream_infos(snap), model_is_tiny=snap["model_is_tiny"], restarts=snap["restarts"])

    @r.post("/streams", status_code=201, response_model=StreamInfo, summary="Add a stream while running")
    async def add_stream(body: StreamConfig, request: Request) -> StreamInfo:
        _count_add(adds, request)
        await api.add_client_stream(body.name, body.source, paused=body.paused)
        return _info(api, body.name)

    @r.get("/streams/{name}", response_model=StreamInfo, summary="One stream's state and live figures")
    async def get_stream(name: str) -> StreamInfo:
        return _info(api, name)

    @r.post("/streams/{name}/pause", response_model=StreamInfo, summary="Stop taking chunks")
    async def pause(name: str) -> StreamInfo:
        await api.pause_stream(name)
        return _info(api, name)

    @r.post("/streams/{name}/resume", response_model=StreamInfo, summary="Take chunks again")
    async def resume(name: str) -> StreamInfo:
        await api.resume_stream(name)
        return _info(api, name)

    @r.delete("/streams/{name}", status_code=204, summary="Stop the stream and forget its context")
    async def remove(name: str) -> Response:
        await api.remove_stream(name)
        return Response(status_code=204)

    @r.get("/streams/{name}/frame.jpg", summary="The newest chunk's first frame, kept patches and audio drawn",
           responses={200: {"content": {"image/jpeg": {}}}}, response_class=Response)
    async def frame(name: str) -> Response:
        index, jpeg = await api.frame_jpeg(name)
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "no-store", "X-OmniSIFT-Chunk": str(index)})


def _info(api: PipelineAPI, name: str) -> StreamInfo:
    for info in stream_infos(api.snapshot()):
        if info.name == name:
            return info
    raise NotFound(f"no stream {name!r}")


def _question_routes(r: APIRouter, api: PipelineAPI, adds: RateLimit | None) -> None:
    @r.post("/streams/{name}/ask", summary="Answer from the stream's live context (SSE with \"stream\": true)",
            responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}})
    async def ask(name: str, body: AskRequest) -> Any:
        if body.sse:
            pieces = api.ask_stream(body.question, name, timeout=body.timeout, **body.settings())
            first = await anext(pieces)  # a bad stream or setting fails here, as JSON with its status
            return StreamingResponse(_answer_events(first, pieces), media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
        answer = await api.ask(body.question, name, timeout=body.timeout, **body.settings())
        return answer.to_json()

    @r.get("/watches", response_model=list[Watch], summary="The standing questions")
    async def list_watches() -> list[dict]:
        return api.watches()

    @r.post("/watches", status_code=201, response_model=Watch, summary="Add a standing question")
    async def add_watch(body: WatchConfig, request: Request) -> dict:
        _count_add(adds, request)
        wid = api.add_watch(body.question, body.stream, every=body.every, threshold=body.threshold)
        return next(w for w in api.watches() if w["id"] == wid)

    @r.delete("/watches/{watch_id}", status_code=204, summary="Remove a standing question")
    async def remove_watch(watch_id: int) -> Response:
        api.remove_watch(watch_id)
        return Response(status_code=204)


async def _answer_events(first: str | Answer, rest: AsyncIterator[str | Answer]) -> AsyncIterator[bytes]:
    """`piece` events ({"text": ...}) as the answer is generated, then one `answer` event. A client that
    goes away closes the question's generator (which cancels it in the model actor)."""
    item = first
    try:
        while not isinstance(item, Answer):
            yield sse.frame("piece", {"text": item})
            item = await anext(rest)
        yield sse.frame("answer", item.to_json())
    except StopAsyncIteration:
        return
    except Exception as e:  # noqa: BLE001 - the stream is already 200: the failure is the last event
        log.warning("streamed answer failed: %s", one_line(e))
        yield sse.frame("error", {"error": one_line(e)})
    finally:
        await rest.aclose()


def _record_routes(r: APIRouter, api: PipelineAPI, history: Any, clips: Any,
                   status: Callable[[], dict] | None) -> None:
    @r.get("/events", summary="The event history, newest first")
    async def events(stream: StreamName | None = None, kind: Annotated[list[EventKind] | None, Query()] = None,
                     since: Annotated[float | None, Query(allow_inf_nan=False)] = None,
                     until: Annotated[float | None, Query(allow_inf_nan=False)] = None,
                     before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
        if history is None:
            raise NotFound("the event history is off (history.path is not set)")
        rows = await asyncio.to_thread(history.query, stream=stream, kinds=kind or (), since=since, until=until,
                                       before_id=before_id, limit=limit)
        return {"events": rows, "next_before_id": rows[-1]["id"] if len(rows) == limit else None}

    @r.get("/events/live", summary="Events as they happen (server-sent events)",
           responses={200: {"content": {"text/event-stream": {}}}}, response_class=StreamingResponse)
    async def live(stream: StreamName | None = None,
                   kind: Annotated[list[str] | None, Query(max_length=16)] = None) -> StreamingResponse:
        kinds = set(kind or ())

        def keep(data: dict) -> bool:
            return (stream is None or data.get("stream") == stream) and (not kinds or data["type"] in kinds)

        return StreamingResponse(sse.live(api, keep), media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)

    @r.get("/clips/{name}", summary="An alert clip (.mp4) or its sidecar (.json); 202 while it is being written",
           response_class=FileResponse, responses={200: {"content": {"video/mp4": {}, "application/json": {}}},
                                                   202: {"description": "named by an alert, not written yet"}})
    async def clip(name: str) -> Response:
        path = None if clips is None else clips.path(name)
        stem = name.rsplit(".", 1)[0] + ".mp4"
        if path is None and clips is not None and stem in clips.pending:
            return JSONResponse({"pending": True, "clip": stem}, status_code=202, headers={"Retry-After": "1"})
        if path is None:
            raise NotFound(f"no clip {name!r}" + ("" if clips is not None else " (clips are off)"))
        return FileResponse(path, media_type="video/mp4" if name.endswith(".mp4") else "application/json")

    @r.get("/status", summary="Counters of the pipeline and of the history, clips and webhooks")
    async def pipeline_status() -> dict:
        return {**api.snapshot(), **(status() if status is not None else {}), "time": time.time()}
