"""Prometheus metrics of a running pipeline, in a registry of its own, served over HTTP.

    omnisift_stage_seconds{stream,stage}         histogram: preprocess, encode, compress, prefill, answer, watch
    omnisift_lag_seconds{stream}                 gauge: capture -> in the model's context, newest chunk
    omnisift_tokens_total{stream,modality,kept}  counter: audio/video tokens before (kept="false") and after
    omnisift_chunks_total{stream}                counter: chunks in the context
    omnisift_chunks_dropped_total{stream}        counter: chunks dropped by the drop policy
    omnisift_chunks_lost_total{stream}           counter: chunks that left the source and never reached the context
                                                 (not delivered within backpressure.restart_wait, an actor dead
                                                 for good, or an actor raised on them)
    omnisift_reconnects_total{stream}            counter: source reconnects
    omnisift_kv_cache_tokens{stream}             gauge: tokens in the stream's KV cache
    omnisift_batch_chunks{kind}                  histogram, per chunk: chunks in the encoder (kind="encoder") or
                                                 prefill (kind="model") forward that took it; mean > 1: batching
    omnisift_actor_restarts_total{actor}         counter: restarts seen (a new process answered)
    omnisift_history_dropped_total               counter: history records lost to a full queue
    omnisift_webhook_deliveries_total{target,result}  counter: delivered, retried (a try failed, more remain),
                                                 failed (tries used up or a final status), dropped (queue full)
    omnisift_clips_total{result}                 counter: alert clips written, failed (or skipped: queue full)
    omnisift_stream_replica{stream,kind}         gauge: the encoder / model replica (its id) serving the stream
    omnisift_replica_streams{kind,replica,node}  gauge: streams a replica serves (node: where it started)
    omnisift_replica_context_tokens{replica}     gauge: context tokens a model replica holds, all its streams
    omnisift_replica_load{kind,replica}          gauge: a replica's load score (pipeline.ray.sharding)
    omnisift_replica_alive{kind,replica}         gauge: 1 while alive, 0 once dead for good
    omnisift_stream_moves_total{stream,kind}     counter: moves of a stream off a replica dead for good (a model
                                                 move starts a fresh context)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import start_http_server

from pipeline.messages import ChunkStats

_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


class PipelineMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.stage = Histogram("omnisift_stage_seconds", "Seconds per chunk or request in each stage",
                               ["stream", "stage"], registry=r, buckets=_BUCKETS)
        self.batch = Histogram("omnisift_batch_chunks", "Chunks in the encoder or prefill forward that took a chunk",
                               ["kind"], registry=r, buckets=_BATCH_BUCKETS)
        self.lag = Gauge("omnisift_lag_seconds", "Capture to in-context delay of the newest chunk", ["stream"],
                         registry=r)
        self.tokens = Counter("omnisift_tokens", "Audio/video tokens before and after compression",
                              ["stream", "modality", "kept"], registry=r)
        self.chunks = Counter("omnisift_chunks", "Chunks appended to the model's context", ["stream"], registry=r)
        self.dropped = Counter("omnisift_chunks_dropped", "Chunks dropped by the drop policy", ["stream"], registry=r)
        self.lost = Counter("omnisift_chunks_lost",
                            "Chunks that left the source and never reached the context: not delivered within "
                            "backpressure.restart_wait, an actor dead for good, or an actor raised on them",
                            ["stream"], registry=r)
        self.reconnects = Counter("omnisift_reconnects", "Source reconnects", ["stream"], registry=r)
        self.cache = Gauge("omnisift_kv_cache_tokens", "Tokens in the stream's KV cache", ["stream"], registry=r)
        self.restarts = Counter("omnisift_actor_restarts", "Actor restarts seen", ["actor"], registry=r)
        self.history_dropped = Counter("omnisift_history_dropped", "History records lost to a full queue",
                                       registry=r)
        self.history_failed = Counter("omnisift_history_write_failed",
                                      "History records the database refused (disk full, read-only, I/O error)",
                                      registry=r)
        self.webhooks = Counter("omnisift_webhook_deliveries", "Webhook deliveries by outcome", ["target", "result"],
                                registry=r)
        self.clips = Counter("omnisift_clips", "Alert clips by outcome", ["result"], registry=r)
        self.stream_replica = Gauge("omnisift_stream_replica", "The replica (its id) serving the stream",
                                    ["stream", "kind"], registry=r)
        self.replica_streams = Gauge("omnisift_replica_streams", "Streams a replica serves",
                                     ["kind", "replica", "node"], registry=r)
        self.replica_tokens = Gauge("omnisift_replica_context_tokens", "Context tokens a model replica holds",
                                    ["replica"], registry=r)
        self.replica_load = Gauge("omnisift_replica_load", "A replica's load score (chunks/s + tokens/4096)",
                                  ["kind", "replica"], registry=r)
        self.replica_alive = Gauge("omnisift_replica_alive", "1 while the replica is alive, 0 once dead for good",
                                   ["kind", "replica"], registry=r)
        self.moves = Counter("omnisift_stream_moves", "Moves of a stream off a replica dead for good",
                             ["stream", "kind"], registry=r)
        self._seen: dict[str, tuple[int, int]] = {}
        self._server = None

    def chunk(self, s: ChunkStats) -> None:
        # a duplicate's prefill ran in a call whose reply was lost: its time is not known
        for stage in ("preprocess", "encode", "compress") + (() if s.duplicate else ("prefill",)):
            self.stage.labels(s.stream, stage).observe(getattr(s, stage))
        self.lag.labels(s.stream).set(s.lag)
        for modality in ("video", "audio"):
            self.tokens.labels(s.stream, modality, "false").inc(getattr(s, f"{modality}_before"))
            self.tokens.labels(s.stream, modality, "true").inc(getattr(s, f"{modality}_after"))
        self.chunks.labels(s.stream).inc()
        self.lost.labels(s.stream)  # shown (at 0) from the stream's first chunk, not only after a loss
        self.cache.labels(s.stream).set(s.cache_tokens)
        self.batch.labels("encoder").observe(s.encode_batch)
        if not s.duplicate:
            self.batch.labels("model").observe(s.prefill_batch)
        self.source_counts(s.stream, s.dropped, s.reconnects)

    def source_counts(self, stream: str, dropped: int, reconnects: int) -> None:
        """Cumulative counts from a source; a restarted source starts from 0 again."""
        d0, r0 = self._seen.get(stream, (0, 0))
        self.dropped.labels(stream).inc(dropped - d0 if dropped >= d0 else dropped)
        self.reconnects.labels(stream).inc(reconnects - r0 if reconnects >= r0 else reconnects)
        self._seen[stream] = (dropped, reconnects)

    def chunk_lost(self, stream: str) -> None:
        """One chunk of `stream` that left its source will never reach the context."""
        self.lost.labels(stream).inc()

    def replicas(self, kind: str, view: list[dict], assignment: dict[str, int]) -> None:
        """The replicas of `kind` as `pipeline.ray.sharding.Sharding.view()` gives them, and which serves
        each stream."""
        for r in view:
            rid = str(r["id"])
            self.replica_streams.labels(kind, rid, r["node"] or "").set(len(r["streams"]))
            self.replica_load.labels(kind, rid).set(r["load"])
            self.replica_alive.labels(kind, rid).set(1 if r["alive"] else 0)
            if kind == "model":
                self.replica_tokens.labels(rid).set(r["context_tokens"])
        for stream, replica in assignment.items():
            self.stream_replica.labels(stream, kind).set(replica)

    def unplace(self, stream: str) -> None:
        """A removed stream is served by no replica."""
        for kind in ("encoder", "model"):
            try:
                self.stream_replica.remove(stream, kind)
            except KeyError:
                pass

    def remove(self, stream: str) -> None:
        """Forget a removed stream: every series labelled with it goes from /metrics (a pipeline that adds
        and removes streams for days keeps only the live ones)."""
        self._seen.pop(stream, None)
        for metric in (self.stage, self.lag, self.tokens, self.chunks, self.dropped, self.lost, self.reconnects,
                       self.cache, self.stream_replica, self.moves):
            names = metric._labelnames  # prometheus_client has no public accessor for them
            keys = {tuple(sample.labels[n] for n in names) for family in metric.collect()
                    for sample in family.samples if sample.labels.get("stream") == stream}
            for key in keys:
                metric.remove(*key)

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics; returns the bound port (useful with port 0). A port in use is a one-line OSError
        naming it."""
        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise OSError(f"metrics: cannot bind {host}:{port}: {e.strerror or e}") from None
        return self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
