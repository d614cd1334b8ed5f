"""`omnisift run CONFIG`: the Ray pipeline a config describes; prints answers, alerts and live lag."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

HELP = "run the Ray pipeline of a config (streams, model, watches, ZeroMQ, metrics)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config YAML (configs/demo.yaml, configs/rtsp.yaml, ...)")
    parser.add_argument("--duration", type=float, default=None, help="seconds to run, then stop cleanly")
    parser.add_argument("--model", default=None, help="override the config's model path or hub id")
    parser.add_argument("--quiet-stats", action="store_true", help="do not print a line per chunk")


def run(args: argparse.Namespace) -> int:
    from pipeline.config import load_pipeline_config

    config = load_pipeline_config(args.config)
    if args.model:
        config = config.model_copy(update={"model": config.model.model_copy(update={"path": args.model})})
    if not config.streams and config.http.port is None:
        raise ValueError(f"{args.config}: no streams, and no HTTP API (http.port) to add them while running: "
                         "list at least one under 'streams'")
    return asyncio.run(run_pipeline(config, args.duration, print_stats=not args.quiet_stats))


async def run_pipeline(config, duration: float | None, *, print_stats: bool = True) -> int:
    """Run until `duration` seconds pass, every stream ends or SIGTERM comes; print what happens; close
    cleanly (streams closed with their `closed` events, the history written and checkpointed, the actors
    and a Ray this run started stopped). SIGTERM (what `docker stop` sends) while the pipeline starts
    stops the start the way Ctrl-C does; once it runs, it ends the run as the end of `duration` would."""
    with _Sigterm() as sigterm:
        try:
            return await _run_pipeline(config, duration, print_stats, sigterm)
        except asyncio.CancelledError:
            if not sigterm.came:
                raise
            print("stopped by SIGTERM while starting", file=sys.stderr, flush=True)
            return 0


class _Sigterm:
    """While entered (in the event loop's thread): SIGTERM cancels the task that entered it until
    `running` is set, and sets `stop` after. Later SIGTERMs are ignored: the close is under way."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.running = False
        self.came = False
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._installed = False

    def __enter__(self) -> _Sigterm:
        self.arm()
        return self

    def arm(self) -> None:
        """(Re)install the handler: starting Ray installs a SIGTERM handler of its own in this process (it
        prints a stack trace and ends the process), so this runs again once the pipeline is up."""
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread: Ctrl-C only
            self._loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
            self._installed = True

    def __exit__(self, *exc) -> None:
        if self._installed:
            self._loop.remove_signal_handler(signal.SIGTERM)

    def _on_sigterm(self) -> None:
        if self.came:
            return
        self.came = True
        print("SIGTERM: stopping (closing streams, writing the history, stopping Ray)", file=sys.stderr, flush=True)
        if self.running:
            self.stop.set()
        else:
            self._task.cancel()


async def _run_pipeline(config, duration: float | None, print_stats: bool, sigterm: _Sigterm) -> int:
    from omnisift.tiny import TINY_BANNER
    from pipeline.ray import OmniStream

    async with OmniStream(config) as stream:
        sigterm.running = True  # from now on SIGTERM ends the run through `sigterm.stop`
        sigterm.arm()
        started = time.monotonic()  # the duration counts from when the pipeline is up
        if stream.model_is_tiny:
            print(TINY_BANNER.format(model=config.model.path), flush=True)
        for name, endpoint in stream.endpoints.items():
            print(f"{name}: {endpoint}", flush=True)
        if "http" in stream.endpoints:
            print(f"dashboard: {stream.endpoints['http']}  (open it in a browser; API under /api, OpenAI under /v1)",
                  flush=True)
        if not config.streams:
            print("no streams yet: add them over HTTP (POST /api/streams); the pipeline waits for them", flush=True)
        for s in config.streams:
            b = stream.budget(s.name, s.source)
            print(f"[{s.name}] context budget: at most {b.worst_case or b.window_tokens} of the model's "
                  f"{b.max_context} tokens ({b.kept_per_chunk} kept per chunk, {b.tokens_per_frame} per frame)",
                  flush=True)
            placed = stream.snapshot()["streams"].get(s.name, {}).get("replica")
            if placed is not None:
                print(f"[{s.name}] on model replica {placed['model']} (node {(placed['node'] or '?')[:12]}), "
                      f"encoder replica {placed['encoder']}", flush=True)
        printer = asyncio.create_task(_print_events(stream, config, print_stats))
        stopped = asyncio.create_task(sigterm.stop.wait())
        remaining = None if duration is None else max(0.0, duration - (time.monotonic() - started))
        try:
            await asyncio.wait({printer, stopped}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (printer, stopped):
                task.cancel()
            await asyncio.gather(printer, stopped, return_exceptions=True)
        snap = stream.snapshot()
    for name, s in snap["streams"].items():
        moved = sum((s["moves"] or {}).values())
        refused = ", ".join(f"{r} {n}" for r, n in sorted(s["refused"].items()))
        print(f"[{name}] {s['state']}: {s['chunks']} chunks, {s['dropped']} dropped, {s['lost']} lost, "
              f"{s['reconnects']} reconnects, {s['gaps']} gaps" + (f", refused: {refused}" if refused else "")
              + (f", moved {moved}x off dead replicas" if moved else ""), flush=True)
    return 0


async def _print_events(stream, config, print_stats: bool) -> None:
    next_question: dict[str, float] = {}
    asking: list[asyncio.Task] = []  # at most one question in flight; cancelled when printing stops
    try:
        await _print_loop(stream, config, print_stats, next_question, asking)
    finally:
        for task in asking:
            task.cancel()
        await asyncio.gather(*asking, return_exceptions=True)


async def _print_loop(stream, config, print_stats, next_question, asking) -> None:
    from pipeline.messages import Answer, ChunkStats, SourceEvent, StreamChange, WatchEvent

    async for ev in stream.events():
        if isinstance(ev, ChunkStats):
            if print_stats:
                fresh = "  FRESH CONTEXT (moved off a dead replica)" if ev.fresh_context else ""
                print(f"[{ev.stream}] chunk {ev.index:4d} @ {ev.media_time:7.1f}s  kept video {ev.video_after}/"
                      f"{ev.video_before} audio {ev.audio_after}/{ev.audio_before}  cache {ev.cache_tokens}  "
                      f"lag {ev.lag:.2f}s  dropped {ev.dropped}  lost {ev.lost}  gaps {ev.gaps}"
                      + ("  (gap before)" if ev.gap_before else "") + f"  replica {ev.replica}{fresh}", flush=True)
            end = ev.media_time + ev.duration
            due = next_question.setdefault(ev.stream, config.ask_every or float("inf"))
            if end >= due and not any(not t.done() for t in asking):
                next_question[ev.stream] = end + config.ask_every
                asking[:] = [asyncio.create_task(_ask(stream, config.question, ev.stream))]
        elif isinstance(ev, WatchEvent):
            tag = "ALERT" if ev.alert else "watch"
            print(f"[{ev.stream}] {tag} p(yes)={ev.p_yes:.2f} {ev.question!r} @ {ev.media_time:.1f}s "
                  f"lag {ev.lag:.2f}s", flush=True)
        elif isinstance(ev, Answer):
            media = "-" if ev.media_time is None else f"{ev.media_time:.1f}s"
            print(f"[{ev.stream}] Q: {ev.question}\n[{ev.stream}] A: {ev.text!r}  (media {media}, lag {ev.lag:.2f}s, "
                  f"{ev.latency:.2f}s to answer)", flush=True)
        elif isinstance(ev, SourceEvent):
            print(f"[{ev.stream}] source {ev.kind} before chunk {ev.index} @ {ev.media_time:.1f}s: {ev.detail}",
                  flush=True)
        elif isinstance(ev, StreamChange):
            detail = f" ({ev.detail})" if ev.detail else ""
            print(f"[{ev.stream}] {ev.state}{detail}", flush=True)
            if ev.state in ("ended", "failed") and not stream._running():
                return


async def _ask(stream, question: str, name: str) -> None:
    try:
        await stream.ask(question, name, timeout=120.0)  # printed when its Answer event arrives
    except Exception as e:  # noqa: BLE001 - a failed question is reported, the pipeline goes on
        print(f"[{name}] question failed: {e}", flush=True)
