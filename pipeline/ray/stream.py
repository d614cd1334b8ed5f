"""`OmniStream`: the async API over the Ray pipeline (sources -> encoder -> model), ZeroMQ and metrics.

    async with OmniStream.from_config("configs/rtsp.yaml") as stream:
        answer = await stream.ask("What is the person holding?", stream="door")
        async for event in stream.watch("Is someone shouting?", stream="door", every=2.0):
            print(event.media_time, event.p_yes, event.lag)

Each stream has two driver-side coroutines (`pipeline.ray.loops`): a *pump* that takes the next
chunk's small meta from the source actor and hands the chunk's object ref (never the frames) to the
encoder, and an *appender* that prefills encoded chunks into the model in order and evaluates standing
questions. Between them an `asyncio.Queue(max_in_flight)`: when the model is slower than real time the
pump stops pulling, the source's own bounded queue fills, and its drop policy (`drop_oldest` for live
streams) discards the oldest chunks and counts them; the count travels in every chunk's stats. A chunk
whose encoder or model actor is restarting is sent again until it is back (`backpressure.restart_wait`);
chunks that still never reach the context are counted too (`lost`). `model.replicas` model actors and
`model.encoder_replicas` encoder actors share the streams out (`pipeline.ray.replicas`: least load, sticky,
shown in `snapshot()`); one dead for good hands its streams to the others (a fresh context on a new model
replica, flagged and counted). With no replica of a kind left, the stream fails: its state is "failed"
with a one-line `detail` naming the actor, in `snapshot()` and in the "stream" event. `lag` is in every
answer, watch event and stats record.

The rest lives beside this module: per-stream state and watches in `pipeline.ray.state`, the
fan-out of events in `pipeline.ray.events`, ZeroMQ requests in `pipeline.serve.requests`, and the
reading of Ray's failures in `pipeline.ray.calls`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pipeline.ray.media as media
from omnisift.tiny import resolve_model
from pipeline.config import (
    PipelineConfig,
    StreamConfig,
    WatchConfig,
    load_pipeline_config,
    source_mapping,
)
from pipeline.messages import (
    Answer,
    ChunkStats,
    GenerationSettings,
    Message,
    StreamChange,
    WatchEvent,
    check_question,
)
from pipeline.ray.calls import actor_gone, await_ref, cancel, creation_error, creation_reason, unwrap
from pipeline.ray.events import EventHub
from pipeline.ray.frontends import Frontends
from pipeline.ray.local import start_local_ray
from pipeline.ray.loops import StreamLoops
from pipeline.ray.models import model_files, stream_budget
from pipeline.ray.replicas import Replicas
from pipeline.ray.sharding import NoReplicaLeft
from pipeline.ray.state import ACTIVE_STATES, OVER_STATES, RestartTracker, Status, StreamState, Watch
from pipeline.serve.requests import Conflict, Forbidden, NotFound, OutOfRange
from streams.errors import SourceError
from streams.policy import admit

log = logging.getLogger(__name__)


class StreamNotFound(NotFound):
    """A request named a stream the pipeline does not run."""


class OmniStream:
    """A running pipeline. Build with `from_config`, use as `async with`, or `await start()` / `close()`."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.streams: dict[str, StreamState] = {}
        self.endpoints: dict[str, str] = {}
        self.model_is_tiny = False
        self._tracker = RestartTracker()
        self.restarts: dict[str, int] = self._tracker.counts  # actor kind -> restarts seen
        self._watches: dict[int, Watch] = {}
        self._adding: set[str] = set()  # names of streams being added (a second add of one is a Conflict)
        self._ids = itertools.count(1)
        self._events = EventHub()
        self._owns_ray = False
        self._started = False
        self.metrics = None
        self.frontends = Frontends(config)
        self._clip_tasks: set[asyncio.Task] = set()  # alert clips being fetched (pipeline.ray.media)
        self.replicas: Replicas | None = None  # the encoder and model actors, and which serves each stream
        self._gpu_group = None  # the placement group holding the replicas' GPUs (pipeline.ray.placement)

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
        """Start Ray (or join `ray.address`), the encoder and model actors, every stream, ZeroMQ, metrics,
        the history, clips, webhooks and HTTP. A missing token or secret fails first, before Ray starts."""
        self.frontends.check()
        await self._start_ray()
        self._started = True
        try:
            await self._start_actors()
            await self._start_frontends()
            for w in self.config.watch:
                wid = next(self._ids)
                self._watches[wid] = Watch(wid, w, origin="config")
            for s in self.config.streams:
                await self.add_stream(s.name, s.source, paused=s.paused)
        except BaseException:
            await self.close()
            raise

    async def _start_ray(self) -> None:
        import ray

        cfg = self.config.ray
        if not ray.is_initialized():
            init = dict(namespace=cfg.namespace, include_dashboard=False, logging_level=logging.WARNING,
                        log_to_driver=False)
            if cfg.address is None:
                await asyncio.to_thread(start_local_ray, num_cpus=cfg.num_cpus, allow_remote=cfg.allow_remote,
                                        **init)
            else:
                await asyncio.to_thread(ray.init, address=cfg.address, **init)
            self._owns_ray = True

    @property
    def encoder(self):
        """The first encoder replica's actor (the only one unless `model.encoder_replicas` > 1)."""
        return None if self.replicas is None else self.replicas.handles["encoder"][0]

    @property
    def model(self):
        """The first model replica's actor (the only one unless `model.replicas` > 1)."""
        return None if self.replicas is None else self.replicas.handles["model"][0]

    async def _start_actors(self) -> None:
        """The encoder and model replicas, running: their constructors load the model now, so a model
        that cannot load fails here with its own message, and one no node can place times out."""
        import ray

        from pipeline.ray.actors import reserve, start_encoder, start_model
        from pipeline.ray.placement import plan_placement

        cfg = self.config
        path, self.model_is_tiny = await asyncio.to_thread(resolve_model, cfg.model.path,
                                                           fallback_tiny=cfg.model.fallback_tiny)
        spec = self.model_spec = cfg.model.model_copy(update={"path": path})
        self._model_files = await asyncio.to_thread(model_files, spec)
        for s in cfg.streams:  # every configured stream fits the model's context, or nothing starts
            self.budget(s.name, s.source)
        # what each replica asks and where it goes; a placement the cluster cannot give: one line, now
        plan = plan_placement(spec, cfg.resources, await asyncio.to_thread(ray.cluster_resources))
        models, encoders = plan.models, plan.encoders
        group = self._gpu_group = await asyncio.to_thread(reserve, plan.bundles, spread=models > 1,
                                                          timeout=cfg.ray.actor_start_timeout)
        self.replicas = Replicas(
            [start_encoder(cfg, spec, spread=encoders > 1, resources=plan.encoder, group=group,
                           bundle=plan.encoder_bundle(j)) for j in range(encoders)],
            [start_model(cfg, spec, spread=models > 1, resources=plan.model, group=group,
                         bundle=plan.model_bundle(i)) for i in range(models)],
            on_move=self._moved)
        try:
            where = await asyncio.wait_for(asyncio.gather(*(a.where.remote() for a in self.replicas.all())),
                                           cfg.ray.actor_start_timeout)
        except TimeoutError:
            raise TimeoutError(
                f"encoder/model actors not running after {cfg.ray.actor_start_timeout:g}s: does a node have "
                f"the resources they ask for (encoder {_wants(plan.encoder)}, model "
                f"{_wants(plan.model)}) and room to load the model?") from None
        except Exception as e:
            if not actor_gone(e):
                raise
            # a constructor raised: a model that cannot load, a bad compressor or option
            raise ValueError(f"the encoder/model actors did not start: {creation_reason(e)}") from None
        self.replicas.placed("encoder", [w["node_id"] for w in where[:encoders]])
        self.replicas.placed("model", [w["node_id"] for w in where[encoders:]])

    async def _start_frontends(self) -> None:
        """Prometheus metrics, ZeroMQ PUB/REP, the history, clips, webhooks and HTTP, as configured
        (`pipeline.ray.frontends`)."""
        try:
            await self.frontends.start(self, self._events)
        finally:
            self.metrics = self.frontends.metrics
            self.endpoints.update(self.frontends.endpoints)
            if self.replicas is not None:
                self.replicas.metrics = self.metrics
                self.replicas.publish()

    def ready(self) -> bool:
        """Started, with an encoder and a model replica alive (the HTTP /readyz)."""
        return self._started and self.replicas is not None and self.replicas.alive()

    async def close(self) -> None:
        """Stop every stream, kill the actors, close ZeroMQ and metrics; shut Ray down if we started it."""
        from pipeline.ray.actors import kill, release

        for name in list(self.streams):
            await self._stop_stream(name, Status.CLOSED)
        for t in list(self._clip_tasks):
            t.cancel()
        await asyncio.gather(*self._clip_tasks, return_exceptions=True)
        for actor in self.replicas.all() if self.replicas is not None else ():
            kill(actor)
        self.replicas = None
        release(self._gpu_group)
        self._gpu_group = None
        self._events.close()  # subscribers (the HTTP live feeds among them) end before the server stops
        await self.frontends.aclose(self._events)
        self.metrics = None
        if self._owns_ray:
            import ray

            await asyncio.to_thread(ray.shutdown)
            self._owns_ray = False
        self._started = False

    # ---- streams ----------------------------------------------------------------------------------

    async def add_stream(self, name: str, source: Any, *, paused: bool = False) -> None:
        """Start a stream while running: `source` is a source config mapping or YAML path, taken as the
        operator's (any source type, any field). A client's request goes through `add_client_stream`.
        The source must open within `limits.source_open_timeout` seconds; one that does not is refused and
        its actor ended. Adds of one name are serialized: while one runs, another is a Conflict."""
        if name in self.streams or name in self._adding:
            raise Conflict(f"stream {name!r} already runs" if name in self.streams
                           else f"stream {name!r} is being added")
        self._adding.add(name)
        try:
            await self._add_stream(name, source, paused)
        finally:
            self._adding.discard(name)

    async def add_client_stream(self, name: str, source: Any, *, paused: bool = False) -> None:
        """Start a stream a client asked for (the HTTP API): its source must be a mapping the operator's
        `runtime_sources` policy allows (`streams.policy.admit`: SourceRefused otherwise, naming the field
        and the rule), and the pipeline must run fewer than `limits.max_streams` streams (Forbidden)."""
        if not isinstance(source, dict):
            raise ValueError("a runtime source must be a source config mapping, not a file path")
        admitted = admit(source, self.config.runtime_sources).model_dump(mode="json")
        limit = self.config.limits.max_streams
        running = len(self.streams) + len(self._adding)
        if running >= limit and name not in self.streams and name not in self._adding:
            raise Forbidden(f"cannot add stream {name!r}: {running} streams run, limits.max_streams is {limit} "
                            f"({self._stream_memory(name, admitted)})")
        await self.add_stream(name, admitted, paused=paused)

    def _stream_memory(self, name: str, source: dict) -> str:
        """What one more stream costs, for a refusal: its worst-case context and that context's KV cache."""
        from omnisift.qwen_sizes import kv_bytes_per_token

        budget = stream_budget(self.model_spec, source, *self._model_files)
        tokens = budget.worst_case or budget.window_tokens
        text = getattr(self._model_files[1], "text_config", self._model_files[1]).to_dict()
        mib = tokens * kv_bytes_per_token(text) / 2**20
        return (f"each stream holds up to {tokens} context tokens, {mib:,.1f} MiB of KV cache in bf16, and a "
                "source actor")

    async def _add_stream(self, name: str, source: Any, paused: bool) -> None:
        from pipeline.ray.actors import kill, start_source

        spec = StreamConfig(name=name, source=source_mapping(source), paused=paused)
        self.budget(name, spec.source)
        clips = self.config.clips
        st = StreamState(spec, keep_media=clips.chunks_before + 1 if clips.dir is not None else 1)
        st.source = start_source(spec, self.config)
        timeout = self.config.limits.source_open_timeout
        try:  # the source opened (a missing file raises here); a FIFO or a dead host may never answer
            st.source_where = await asyncio.wait_for(st.source.where.remote(), timeout)
        except TimeoutError:
            kill(st.source)
            raise SourceError(f"stream {name!r}: the source did not open within {timeout:g}s "
                              "(limits.source_open_timeout); refused") from None
        except Exception as e:  # noqa: BLE001 - any failure to open: the source's own one-line reason
            kill(st.source)
            raise creation_error(name, e) from None
        st.queue = asyncio.Queue(self.config.backpressure.max_in_flight)
        self.streams[name] = st
        if not paused:
            st.resumed.set()
        try:
            self.replicas.assign(name)
        except NoReplicaLeft as e:
            del self.streams[name]
            kill(st.source)
            raise Conflict(f"cannot add stream {name!r}: {e}") from None
        self._events.set_state(st, Status.PAUSED if paused else Status.RUNNING)
        st.tasks = StreamLoops(st, metrics=self.metrics, events=self._events, watches=self._watches,
                               restarts=self._tracker, restart_wait=self.config.backpressure.restart_wait,
                               on_alert=self._alerted, router=self.replicas).start()

    def budget(self, name: str, source: dict):
        """The stream's worst-case context (`pipeline.session.budget.ContextBudget`); a one-line
        ValueError naming the numbers when it passes the model's context."""
        budget = stream_budget(self.model_spec, source, *self._model_files)
        budget.check(f"stream {name!r}")
        return budget

    async def pause_stream(self, name: str) -> None:
        """Stop taking chunks; a live source keeps only its newest `queue_size` chunks meanwhile."""
        st = self._stream(name)
        st.require_live("pause")
        st.resumed.clear()
        self._events.set_state(st, Status.PAUSED)

    async def resume_stream(self, name: str) -> None:
        """Take chunks again after `pause_stream`."""
        st = self._stream(name)
        st.require_live("resume")
        st.resumed.set()
        self._events.set_state(st, Status.RUNNING)

    async def remove_stream(self, name: str) -> None:
        """Stop the stream, close its source and forget its context."""
        self._stream(name)
        await self._stop_stream(name, Status.REMOVED)

    async def _stop_stream(self, name: str, state: Status) -> None:
        from pipeline.ray.actors import close_source

        st = self.streams.pop(name)
        for t in st.tasks:
            t.cancel()
        await asyncio.gather(*st.tasks, return_exceptions=True)
        await close_source(st.source)
        for actor in self.replicas.remove(name) if self.replicas is not None else ():
            actor.remove.remote(name)
        if self.metrics is not None:
            self.metrics.remove(name)
        self._events.set_state(st, state)

    def _moved(self, name: str, kind: str, old: int, new: int) -> None:
        """A stream moved off a replica dead for good: its state event says so (a failed stream keeps
        its reason)."""
        st = self.streams.get(name)
        if st is None or st.state == Status.FAILED:
            return
        fresh = " on a fresh context" if kind == "model" else ""
        detail = f"{kind} replica {old} is dead for good: moved to replica {new}{fresh}"
        log.warning("%s: %s", name, detail)
        self._events.set_state(st, st.state, detail)

    def _model_of(self, st: StreamState):
        """The model replica holding the stream's context."""
        return self.replicas.handle("model", st.spec.name)

    def _stream(self, name: str | None) -> StreamState:
        if name is None:
            if len(self.streams) == 1:
                return next(iter(self.streams.values()))
            raise StreamNotFound(f"name a stream: this pipeline runs {_names(self.streams)}")
        st = self.streams.get(name)
        if st is None:
            raise StreamNotFound(f"no stream {name!r}; this pipeline runs {_names(self.streams)}")
        return st

    # ---- the user's side --------------------------------------------------------------------------

    async def ask(self, question: str, stream: str | None = None, *, max_new_tokens: int | None = None,
                  timeout: float | None = None, **generation) -> Answer:  # noqa: ASYNC109 - a per-question deadline is part of the API
        """Answer from the stream's live context as it is now. `max_new_tokens` and the other
        `GenerationSettings` default to the config's. Raises StreamNotFound, ValueError for an empty
        question, one past `model.max_question_tokens` or a bad setting, TimeoutError after `timeout` seconds;
        cancelling the await cancels it. The model stops generating at `timeout` too (it is in the question's
        `GenerationSettings`), so a timed-out question does not keep the model busy."""
        check_question(question, self.config.model.max_question_tokens)
        settings = GenerationSettings.of(self.config.model.max_new_tokens if max_new_tokens is None
                                         else max_new_tokens, timeout=timeout, **generation)
        st = self._stream(stream)
        model, ticket = self._model_of(st), uuid.uuid4().hex
        ref = model.ask.remote(st.spec.name, question, settings, ticket=ticket)
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(await_ref(ref), timeout)
        except asyncio.CancelledError:
            model.cancel_ask.remote(ticket)  # the model stops generating (Ray cannot cancel the running call)
            cancel(ref)
            raise
        except TimeoutError:
            cancel(ref)  # the model stops by itself at the same deadline (in `settings`), counted as timed out
            raise
        except Exception as e:  # noqa: BLE001 - the actor's own exception, without Ray's wrapper
            raise unwrap(e) from None
        if self.metrics is not None:
            self.metrics.stage.labels(st.spec.name, "answer").observe(time.perf_counter() - started)
        self._events.emit(answer)
        return answer

    async def ask_stream(self, question: str, stream: str | None = None, *, max_new_tokens: int | None = None,
                         timeout: float | None = None, **generation) -> AsyncIterator[str | Answer]:  # noqa: ASYNC109
        """`ask`, its text yielded in pieces as the model generates them, then the whole `Answer` (also
        emitted as an event). The same checks and `timeout` (for the whole answer) as `ask`."""
        check_question(question, self.config.model.max_question_tokens)
        settings = GenerationSettings.of(self.config.model.max_new_tokens if max_new_tokens is None
                                         else max_new_tokens, timeout=timeout, **generation)
        st = self._stream(stream)
        pieces = self._model_of(st).ask_stream.options(num_returns="streaming").remote(st.spec.name, question,
                                                                                       settings)
        started = time.perf_counter()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    item = await asyncio.wait_for(_next_piece(pieces), left)
                except StopAsyncIteration:
                    return
                except (asyncio.CancelledError, TimeoutError):
                    raise
                except Exception as e:  # noqa: BLE001 - the actor's own exception, without Ray's wrapper
                    raise unwrap(e) from None
                if isinstance(item, Answer):
                    if self.metrics is not None:
                        self.metrics.stage.labels(st.spec.name, "answer").observe(time.perf_counter() - started)
                    self._events.emit(item)
                yield item
        finally:
            cancel(pieces)

    def add_watch(self, question: str, stream: str | None = None, *, every: float = 2.0,
                  threshold: float = 0.5) -> int:
        """Register a client's standing question (the HTTP API's); its evaluations come as events. Returns its
        id. Within `limits`: `every` at least `min_watch_every` (OutOfRange), at most `max_watches` such
        questions and `max_watches_per_stream` on one stream (Forbidden, naming the numbers)."""
        check_question(question, self.config.model.max_question_tokens)
        if stream is not None:
            self._stream(stream)
        limits = self.config.limits
        if every < limits.min_watch_every:
            raise OutOfRange(f"every of {every:g}s is more often than limits.min_watch_every "
                             f"({limits.min_watch_every:g}s of media)")
        ours = [w for w in self._watches.values() if w.origin == "api"]
        if len(ours) >= limits.max_watches:
            raise Forbidden(f"{len(ours)} standing questions were added, limits.max_watches is {limits.max_watches}")
        on_it = sum(w.spec.stream == stream for w in ours)
        if on_it >= limits.max_watches_per_stream:
            where = "every stream" if stream is None else f"stream {stream!r}"
            raise Forbidden(f"{on_it} standing questions on {where}, limits.max_watches_per_stream is "
                            f"{limits.max_watches_per_stream}")
        wid = next(self._ids)
        spec = WatchConfig(question=question, stream=stream, every=every, threshold=threshold)
        self._watches[wid] = Watch(wid, spec, origin="api")
        return wid

    def remove_watch(self, watch_id: int) -> None:
        if self._watches.pop(watch_id, None) is None:
            raise NotFound(f"no standing question {watch_id}")

    def watches(self) -> list[dict]:
        """The standing questions: id, question, stream, every, threshold, origin."""
        return [{"id": w.id, **w.spec.model_dump(), "origin": w.origin} for w in self._watches.values()]

    async def frame_jpeg(self, stream: str) -> tuple[int, bytes]:
        """(chunk index, JPEG) of the stream's newest chunk in the context with what was kept drawn over it."""
        st = self._stream(stream)
        return await media.frame_jpeg(st, self._model_of(st))

    def _alerted(self, st: StreamState, event: WatchEvent) -> WatchEvent:
        """An alert: name its clip and start writing it (from the chunks the stream holds); the event
        carries the clip's name. Watches that alert on the same chunk share one clip."""
        if self.frontends.clips is None or not st.recent:
            return event
        if st.last_clip is not None and st.last_clip[0] == event.index:
            return replace(event, clip=st.last_clip[1])
        name = media.clip_name(st.spec.name, event.index)
        st.last_clip = (event.index, name)
        self.frontends.clips.expect(name)
        watch = self._watches.get(event.watch_id)
        threshold = None if watch is None else watch.spec.threshold
        refs = [ref for _, ref in st.recent]
        self._clip_tasks.add(task := asyncio.create_task(self._write_clip(st, refs, event, name, threshold)))
        task.add_done_callback(self._clip_tasks.discard)
        return replace(event, clip=name)

    async def _write_clip(self, st: StreamState, refs: list, event: WatchEvent, name: str,
                          threshold: float | None) -> None:
        from pipeline.serve.clips import ClipJob

        try:
            frames, audio, indices = await media.clip_media(refs)
            side = media.sidecar(event, st, indices, threshold)
            model = self._model_of(st) if self.replicas is not None else None
            layout = await model.kept_layout.remote(st.spec.name) if model is not None else None
            if layout is not None and layout.index == event.index:
                side["kept_cells"] = None if layout.video is None else layout.video.astype(int).tolist()
                side["kept_audio"] = None if layout.audio is None else layout.audio.astype(int).tolist()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure loses this clip only, and is said
            log.error("%s: alert clip %s: the chunks could not be fetched: %s", st.spec.name, name, e)
            if self.frontends.clips is not None:
                self.frontends.clips.forget(name)
            return
        if self.frontends.clips is not None:
            self.frontends.clips.submit(ClipJob(name, frames, audio, side))

    async def watch(self, question: str, stream: str | None = None, *, every: float = 2.0,
                    threshold: float = 0.5, max_pending: int = 64) -> AsyncIterator[WatchEvent]:
        """A standing yes/no question, evaluated as the stream's chunks arrive (at most once per `every`
        seconds of media); yields a `WatchEvent` per evaluation. Stops when the stream ends or the pipeline
        closes. The question is unregistered when the generator closes: wrap it in
        `contextlib.aclosing(...)` to make that happen at `break` rather than at garbage collection."""
        if stream is not None:
            self._stream(stream)
        spec = WatchConfig(question=question, stream=stream, every=every, threshold=threshold)
        wid = next(self._ids)
        self._watches[wid] = Watch(wid, spec)
        try:
            with self._events.subscribe({"watch", "alert", "stream"}, watch_id=wid, max_pending=max_pending) as queue:
                while (item := await queue.get()) is not None:
                    if isinstance(item, StreamChange):
                        if item.state in OVER_STATES and self._watch_over(item.stream, stream):
                            return
                        continue
                    yield item
        finally:
            self._watches.pop(wid, None)

    async def stats(self, stream: str | None = None, *, max_pending: int = 256) -> AsyncIterator[ChunkStats]:
        """Per-chunk statistics as chunks join the context (of one stream, or all); ends when the
        pipeline closes. A consumer that falls `max_pending` behind loses the oldest records."""
        if stream is not None:
            self._stream(stream)
        with self._events.subscribe({"stats"}, max_pending=max_pending) as queue:
            while (item := await queue.get()) is not None:
                if stream is None or item.stream == stream:
                    yield item

    async def events(self, *, max_pending: int = 256) -> AsyncIterator[Message]:
        """Everything, as `pipeline.messages`: ChunkStats, Answer, WatchEvent, StreamChange (for the CLI)."""
        with self._events.subscribe(None, max_pending=max_pending) as queue:
            while (item := await queue.get()) is not None:
                yield item

    def _running(self) -> bool:
        return any(s.state in ACTIVE_STATES for s in self.streams.values())

    def _watch_over(self, ended: str, watched: str | None) -> bool:
        """Whether stream `ended` being over ends a watch of `watched` (None: all, so the last one)."""
        return ended == watched or watched is None and not self._running()

    def snapshot(self) -> dict:
        """Counters of every stream now: state, chunks, drops, losses, reconnects, gaps, refused messages, lag,
        cache, where it runs (`replica`: model and encoder replica ids and the model replica's node) and its moves
        off replicas dead for good; actor restarts; per replica of each kind: node, alive, streams, load, context
        tokens; the REP socket's requests (served, refused by reason, in progress)."""
        reps, zmq = self.replicas, self.frontends.zmq
        streams = {name: st.snapshot(replica=None if reps is None else reps.placement(name),
                                     moves=None if reps is None else reps.moves_of(name)).model_dump()
                   for name, st in self.streams.items()}
        return {"streams": streams, "restarts": dict(self.restarts), "model_is_tiny": self.model_is_tiny,
                "replicas": {} if reps is None else reps.view(), "requests": None if zmq is None else zmq.stats()}


async def _next_piece(pieces) -> Any:
    """The next item of a Ray streaming generator (StopAsyncIteration at its end)."""
    ref = await pieces.__anext__()
    return await ref


def _wants(res) -> str:
    want = {"CPU": res.num_cpus, "GPU": res.num_gpus, **res.resources}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in want.items() if v) + "}"


def _names(streams: dict) -> str:
    return ", ".join(sorted(streams)) or "no streams"
