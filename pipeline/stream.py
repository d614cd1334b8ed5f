"""`OmniStream`: the async API over the Ray pipeline (sources -> encoder -> model), ZeroMQ and metrics.

    async with OmniStream.from_config("configs/rtsp.yaml") as stream:
        answer = await stream.ask("What is the person holding?", stream="door")
        async for event in stream.watch("Is someone shouting?", stream="door", every=2.0):
            print(event.media_time, event.p_yes, event.lag)

Each stream has two driver-side coroutines: a *pump* that takes the next chunk's small meta from the
source actor and hands the chunk's object ref (never the frames) to the encoder, and an *appender* that
prefills encoded chunks into the model in order and evaluates standing questions. Between them an
`asyncio.Queue(max_in_flight)`: when the model is slower than real time the pump stops pulling, the
source's own bounded queue fills, and its drop policy (`drop_oldest` for live streams) discards the
oldest chunks and counts them; the count travels in every chunk's stats. `lag` is in every answer,
watch event and stats record.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import (
    PipelineConfig,
    StreamSpec,
    WatchSpec,
    load_pipeline_config,
    source_mapping,
)
from pipeline.workers import Answer, ChunkStats, WatchEvent, resolve_model_path

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.3  # between calls to an actor that is restarting
GIVE_UP_SECONDS = 60.0  # an actor unreachable this long fails the stream


class StreamNotFound(ValueError):
    """A request named a stream the pipeline does not run."""


@dataclass
class _Watch:
    id: int
    spec: WatchSpec
    next_due: dict[str, float] = field(default_factory=dict)  # stream -> media time of the next evaluation


@dataclass
class _Stream:
    spec: StreamSpec
    source: Any = None
    state: str = "starting"
    detail: str = ""
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    queue: asyncio.Queue | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)
    chunks: int = 0
    last: ChunkStats | None = None
    dropped: int = 0
    reconnects: int = 0
    source_pid: int = 0


class OmniStream:
    """A running pipeline. Build with `from_config`, use as `async with`, or `await start()` / `close()`."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.streams: dict[str, _Stream] = {}
        self.endpoints: dict[str, str] = {}
        self.model_is_tiny = False
        self.restarts: dict[str, int] = {"source": 0, "encoder": 0, "model": 0}
        self._watches: dict[int, _Watch] = {}
        self._ids = itertools.count(1)
        self._subscribers: list[tuple[asyncio.Queue, set[str] | None, int | None]] = []
        self._pids: dict[str, int] = {}
        self._owns_ray = False
        self._started = False
        self.encoder = self.model = None
        self.metrics = self.zmq = None

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> OmniStream:
        """From a YAML path, a mapping or a `PipelineConfig`; `overrides` replace top-level fields."""
        return cls(load_pipeline_config(config, **overrides))

    # ---- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> OmniStream:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self) -> None:
        """Start Ray (or join `ray.address`), the encoder and model actors, every stream, ZeroMQ, metrics."""
        import ray

        from pipeline import actors

        cfg = self.config
        if not ray.is_initialized():
            await asyncio.to_thread(
                ray.init, address=cfg.ray.address, num_cpus=cfg.ray.num_cpus if cfg.ray.address is None else None,
                namespace=cfg.ray.namespace, include_dashboard=False, logging_level=logging.WARNING,
                log_to_driver=False,
            )
            self._owns_ray = True
        self._started = True
        try:
            spec = cfg.model.model_dump()
            spec["path"], self.model_is_tiny = await asyncio.to_thread(resolve_model_path, spec)
            self.model_spec = spec
            self.encoder = actors.start_encoder(cfg, spec)
            self.model = actors.start_model(cfg, spec)
            # constructors run now; a model that cannot load fails here, with its own message
            try:
                await asyncio.wait_for(asyncio.gather(self.encoder.where.remote(), self.model.where.remote()),
                                       cfg.ray.actor_start_timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"encoder/model actors not running after {cfg.ray.actor_start_timeout:g}s: does a node have "
                    f"the resources they ask for (encoder {_wants(cfg.resources.encoder)}, model "
                    f"{_wants(cfg.resources.model)}) and room to load the model?") from None
            from pipeline.metrics import PipelineMetrics

            self.metrics = PipelineMetrics()
            if cfg.metrics.port is not None:
                port = self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
                self.endpoints["metrics"] = f"http://{cfg.metrics.host}:{port}/metrics"
            if cfg.zmq.pub or cfg.zmq.rep:
                from pipeline.zmq_api import ZmqFrontend

                self.zmq = ZmqFrontend(cfg.zmq.pub, cfg.zmq.rep, self._handle_request, cfg.zmq.curve)
                self.zmq.start()
                self.endpoints.update(self.zmq.endpoints)
            for w in cfg.watch:
                self._watches[next(self._ids)] = _Watch(0, w)
            for s in cfg.streams:
                await self.add_stream(s.name, s.source, paused=s.paused)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop every stream, kill the actors, close ZeroMQ and metrics; shut Ray down if we started it."""
        from pipeline import actors

        for name in list(self.streams):
            await self._stop_stream(name, "closed")
        actors.kill(self.encoder)
        actors.kill(self.model)
        self.encoder = self.model = None
        if self.zmq is not None:
            await self.zmq.aclose()
            self.zmq = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        for q, _, _ in self._subscribers:
            _put(q, None)
        if self._owns_ray:
            import ray

            await asyncio.to_thread(ray.shutdown)
            self._owns_ray = False
        self._started = False

    # ---- streams ----------------------------------------------------------------------------------

    async def add_stream(self, name: str, source: Any, *, paused: bool = False) -> None:
        """Start a stream while running: `source` is a source config mapping or YAML path."""
        from pipeline import actors

        if name in self.streams:
            raise ValueError(f"stream {name!r} already runs")
        spec = StreamSpec(name=name, source=source_mapping(source), paused=paused)
        st = _Stream(spec)
        st.source = actors.start_source(spec, self.config)
        try:
            await st.source.where.remote()  # the source opened (a missing file raises here)
        except Exception as e:
            actors.kill(st.source)
            raise _creation_error(name, e) from None
        st.queue = asyncio.Queue(self.config.backpressure.max_in_flight)
        self.streams[name] = st
        if not paused:
            st.resumed.set()
        self._set_state(st, "paused" if paused else "running")
        st.tasks = [asyncio.create_task(self._pump(st), name=f"pump-{name}"),
                    asyncio.create_task(self._appender(st), name=f"append-{name}")]

    async def pause_stream(self, name: str) -> None:
        """Stop taking chunks; a live source keeps only its newest `queue_size` chunks meanwhile."""
        st = self._stream(name)
        st.resumed.clear()
        self._set_state(st, "paused")

    async def resume_stream(self, name: str) -> None:
        st = self._stream(name)
        st.resumed.set()
        self._set_state(st, "running")

    async def remove_stream(self, name: str) -> None:
        """Stop the stream, close its source and forget its context."""
        self._stream(name)
        await self._stop_stream(name, "removed")

    async def _stop_stream(self, name: str, state: str) -> None:
        from pipeline import actors

        st = self.streams.pop(name)
        for t in st.tasks:
            t.cancel()
        await asyncio.gather(*st.tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(st.source.close.remote(), 5.0)
        except Exception:  # noqa: BLE001 - dead or hung: killed below anyway
            pass
        actors.kill(st.source)
        for actor in (self.encoder, self.model):
            if actor is not None:
                actor.remove.remote(name)
        if self.metrics is not None:
            self.metrics.remove(name)
        self._set_state(st, state)

    def _stream(self, name: str | None) -> _Stream:
        if name is None:
            if len(self.streams) == 1:
                return next(iter(self.streams.values()))
            raise StreamNotFound(f"name a stream: this pipeline runs {_names(self.streams)}")
        st = self.streams.get(name)
        if st is None:
            raise StreamNotFound(f"no stream {name!r}; this pipeline runs {_names(self.streams)}")
        return st

    def _set_state(self, st: _Stream, state: str, detail: str = "") -> None:
        st.state, st.detail = state, detail
        self._emit({"type": "stream", "stream": st.spec.name, "state": state, "detail": detail, "time": time.time()})

    # ---- the per-stream loops ---------------------------------------------------------------------

    async def _pump(self, st: _Stream) -> None:
        """Source -> encoder, one chunk at a time, bounded by the queue to the appender."""
        name, failing_since = st.spec.name, None
        while True:
            await st.resumed.wait()
            try:
                meta_ref, chunk_ref = st.source.next_chunk.options(num_returns=2).remote(0.5)
                meta = await meta_ref
                failing_since = None
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                if not _actor_gone(e):
                    self._set_state(st, "failed", _one_line(_unwrap(e)))
                    await st.queue.put(None)
                    return
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > GIVE_UP_SECONDS:
                    self._set_state(st, "failed", "source actor unreachable")
                    await st.queue.put(None)
                    return
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self._seen_pid(st, "source", meta.pid)
            st.dropped, st.reconnects = meta.dropped, meta.reconnects
            if self.metrics is not None:
                self.metrics.source_counts(name, meta.dropped, meta.reconnects)
            if meta.kind == "end":
                await st.queue.put(None)
                return
            if meta.kind != "chunk":
                continue
            encoded_ref = self.encoder.encode.remote(chunk_ref)  # the frames go source -> encoder directly
            del chunk_ref
            await st.queue.put((meta, encoded_ref))  # waits while max_in_flight chunks are in flight

    async def _appender(self, st: _Stream) -> None:
        """Encoded chunks -> model context, in order; then the standing questions of this stream."""
        while True:
            item = await st.queue.get()
            if item is None:
                if st.state != "failed":
                    self._set_state(st, "ended")
                return
            meta, encoded_ref = item
            stats = await self._retrying(lambda m=meta, r=encoded_ref: self.model.append.remote(m, r), st)
            del encoded_ref
            if stats is None:
                continue  # lost to an actor restart; the next chunk goes on
            self._seen_pid(st, "model", stats.model_pid)
            self._seen_pid(st, "encoder", stats.encoder_pid)
            st.chunks += 1
            st.last = stats
            if self.metrics is not None:
                self.metrics.chunk(stats)
            self._emit(stats.to_json())
            await self._evaluate_watches(st, stats)

    async def _retrying(self, call, st: _Stream):
        """Await an actor call; None if the actor died under it (it restarts; the chunk is lost)."""
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            if _actor_gone(e):
                log.warning("%s: actor lost a chunk (%s); it restarts", st.spec.name, type(e).__name__)
                await asyncio.sleep(RETRY_SECONDS)
                return None
            self._set_state(st, "error", _one_line(_unwrap(e)))
            log.error("%s: %s", st.spec.name, _one_line(_unwrap(e)))
            return None

    def _seen_pid(self, st: _Stream, actor: str, pid: int) -> None:
        key = actor if actor != "source" else f"source:{st.spec.name}"
        old = self._pids.get(key)
        self._pids[key] = pid
        if old is not None and old != pid and pid:
            self.restarts[actor] += 1
            if self.metrics is not None:
                self.metrics.restarts.labels(actor).inc()
            self._set_state(st, st.state, f"{actor} actor restarted")

    async def _evaluate_watches(self, st: _Stream, stats: ChunkStats) -> None:
        end = stats.media_time + stats.duration
        for w in list(self._watches.values()):
            if w.spec.stream not in (None, st.spec.name):
                continue
            due = w.next_due.get(st.spec.name)
            if due is not None and end < due - 1e-6:
                continue
            w.next_due[st.spec.name] = end + w.spec.every
            started = time.perf_counter()
            p = await self._retrying(lambda q=w.spec.question: self.model.yes_probability.remote(st.spec.name, q), st)
            if p is None:
                continue
            if self.metrics is not None:
                self.metrics.stage.labels(st.spec.name, "watch").observe(time.perf_counter() - started)
            event = WatchEvent(st.spec.name, w.spec.question, stats.index, end, p, p >= w.spec.threshold,
                               max(0.0, time.time() - stats.capture_time), w.id)
            self._emit(event.to_json(), event)

    # ---- the user's side --------------------------------------------------------------------------

    async def ask(self, question: str, stream: str | None = None, *, max_new_tokens: int | None = None,
                  timeout: float | None = None, **generation) -> Answer:  # noqa: ASYNC109 - a per-question deadline is part of the API
        """Answer from the stream's live context as it is now. Raises StreamNotFound, ValueError for an
        empty question, TimeoutError after `timeout` seconds; cancelling the await cancels the request."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        if max_new_tokens is not None and not 1 <= int(max_new_tokens) <= 4096:
            raise ValueError(f"max_new_tokens must be within [1, 4096], got {max_new_tokens}")
        st = self._stream(stream)
        ref = self.model.ask.remote(st.spec.name, question, max_new_tokens, **generation)
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(_await(ref), timeout)
        except (asyncio.CancelledError, TimeoutError):
            _cancel(ref)
            raise
        except Exception as e:
            raise _unwrap(e) from None
        if self.metrics is not None:
            self.metrics.stage.labels(st.spec.name, "answer").observe(time.perf_counter() - started)
        self._emit(answer.to_json(), answer)
        return answer

    async def watch(self, question: str, stream: str | None = None, *, every: float = 2.0,
                    threshold: float = 0.5, max_pending: int = 64) -> AsyncIterator[WatchEvent]:
        """A standing yes/no question, evaluated as the stream's chunks arrive (at most once per `every`
        seconds of media); yields a `WatchEvent` per evaluation. Stops when the stream ends or the pipeline
        closes. The question is unregistered when the generator closes: wrap it in
        `contextlib.aclosing(...)` to make that happen at `break` rather than at garbage collection."""
        if stream is not None:
            self._stream(stream)
        spec = WatchSpec(question=question, stream=stream, every=every, threshold=threshold)
        wid = next(self._ids)
        self._watches[wid] = _Watch(wid, spec)
        queue: asyncio.Queue = asyncio.Queue(max_pending)
        sub = (queue, {"watch", "alert", "stream"}, wid)
        self._subscribers.append(sub)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, dict):  # a stream state change
                    over = item["state"] in ("ended", "failed", "removed", "closed")
                    if over and (item["stream"] == stream or stream is None and not self._running()):
                        return
                    continue
                yield item
        finally:
            self._watches.pop(wid, None)
            self._subscribers.remove(sub)

    async def stats(self, stream: str | None = None, *, max_pending: int = 256) -> AsyncIterator[ChunkStats]:
        """Per-chunk statistics as chunks join the context (of one stream, or all); ends when the
        pipeline closes. A consumer that falls `max_pending` behind loses the oldest records."""
        if stream is not None:
            self._stream(stream)
        queue: asyncio.Queue = asyncio.Queue(max_pending)
        sub = (queue, {"stats"}, None)
        self._subscribers.append(sub)
        try:
            while (item := await queue.get()) is not None:
                if stream is None or item.stream == stream:
                    yield item
        finally:
            self._subscribers.remove(sub)

    async def events(self, *, max_pending: int = 256) -> AsyncIterator[Any]:
        """Everything: ChunkStats, Answer, WatchEvent, and stream state dicts (for the CLI)."""
        queue: asyncio.Queue = asyncio.Queue(max_pending)
        sub = (queue, None, None)
        self._subscribers.append(sub)
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self._subscribers.remove(sub)

    def _running(self) -> bool:
        return any(s.state in ("running", "paused", "starting", "error") for s in self.streams.values())

    def snapshot(self) -> dict:
        """Counters of every stream now: state, chunks, drops, reconnects, lag, cache; actor restarts."""
        out = {"streams": {}, "restarts": dict(self.restarts), "model_is_tiny": self.model_is_tiny}
        for name, st in self.streams.items():
            last = st.last
            out["streams"][name] = {
                "state": st.state, "detail": st.detail, "chunks": st.chunks, "dropped": st.dropped,
                "reconnects": st.reconnects, "lag": None if last is None else last.lag,
                "media_time": None if last is None else last.media_time + last.duration,
                "cache_tokens": None if last is None else last.cache_tokens,
            }
        return out

    def _emit(self, message: dict, obj: Any = None) -> None:
        if self.zmq is not None:
            self.zmq.publish(message)
        kind = message["type"]
        item = obj if obj is not None else (message if kind == "stream" else None)
        if kind == "stats":
            item = _stats_from(message)
        for queue, kinds, wid in list(self._subscribers):
            if kinds is not None and kind not in kinds:
                continue
            if wid is not None and kind in ("watch", "alert") and message.get("watch_id") != wid:
                continue
            _put(queue, item)

    async def _handle_request(self, request: dict) -> dict:
        if request.get("command") == "streams":
            return {"ok": True, "streams": {n: s.state for n, s in self.streams.items()}}
        if request.get("command") == "stats":
            return {"ok": True, **self.snapshot()}
        if "question" not in request:
            raise ValueError("request needs a 'question' (or 'command': 'streams' | 'stats')")
        unknown = set(request) - {"question", "stream", "max_new_tokens", "timeout"}
        if unknown:
            raise ValueError(f"unknown request field {min(unknown)!r}")
        answer = await self.ask(request["question"], request.get("stream"),
                                max_new_tokens=request.get("max_new_tokens"), timeout=request.get("timeout", 120.0))
        return {"ok": True, "answer": answer.to_json()}


def _wants(res) -> str:
    want = {"CPU": res.num_cpus, "GPU": res.num_gpus, **res.resources}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in want.items() if v) + "}"


def _stats_from(message: dict) -> ChunkStats:
    return ChunkStats(**{k: v for k, v in message.items() if k != "type"})


def _put(queue: asyncio.Queue, item: Any) -> None:
    """Put without waiting; a full queue loses its oldest item (slow consumers never stall the pipeline)."""
    if queue.full():
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
    queue.put_nowait(item)


async def _await(ref):
    return await ref


def _cancel(ref) -> None:
    try:
        import ray

        ray.cancel(ref)
    except Exception:  # noqa: BLE001 - best effort: a running threaded-actor task finishes on its own
        pass


def _actor_gone(e: BaseException) -> bool:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return isinstance(e, (RayActorError, ActorDiedError, ActorUnavailableError))


def _unwrap(e: BaseException) -> BaseException:
    from ray.exceptions import RayTaskError

    if isinstance(e, RayTaskError) and e.cause is not None:
        return e.cause
    return e


def _creation_error(name: str, e: BaseException) -> Exception:
    """The one-line reason an actor's constructor failed (Ray wraps it in an ActorDiedError)."""
    from streams.errors import SourceError

    cause = _unwrap(e)
    text = str(cause)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):  # the original exception's own line in the creation traceback
        if ln.startswith(("streams.errors.", "SourceError", "ConfigError", "FileNotFoundError", "ValueError")):
            text = ln.split(": ", 1)[-1]
            break
    return SourceError(f"stream {name!r}: {' '.join(text.split())[:300]}")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


def _names(streams: dict) -> str:
    return ", ".join(sorted(streams)) or "no streams"
