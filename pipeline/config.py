"""The pipeline config: which streams, which model, how actors are placed, ZeroMQ, metrics. Validated on load.

`load_pipeline_config(path_or_mapping)` returns a `PipelineConfig` or raises `ConfigError` with one line
naming the field and the bad value. A stream's `source` is a source config mapping or the path of a
`configs/source-*.yaml` file (relative paths resolve against the pipeline config's folder, then the
working directory); it is validated by `streams.load_source_config`. `model.compressor_options` are the
keyword options of the named compressor (`operators` registry, e.g. `carry_previous_frame` of `omnisift`,
`audio` of the video-only baselines); the encoder and model actors check them when they start (loading
the config does not import torch), with one line naming the bad option and the compressor's options.

    streams:
      - {name: door, source: source-rtsp.yaml}
    model: {path: Qwen/Qwen2.5-Omni-7B, compressor: omnisift, retention: 0.25, window_seconds: 300,
            compressor_options: {carry_previous_frame: true}, replicas: auto, encoder_replicas: 2,
            encoder_batch: {max_batch: 8, max_wait_ms: 5}, model_batch: {batch_prefill: true, max_batch: 16}}
    backpressure: {max_in_flight: 2, drop_policy: drop_oldest, queue_size: 4, restart_wait: 30}
    resources: {encoder: {num_gpus: 0.5}, model: {num_gpus: 0.5}}
    zmq: {pub: tcp://127.0.0.1:5560, rep: tcp://127.0.0.1:5561}
    metrics: {port: 9464}
    http: {host: 127.0.0.1, port: 8321, token_env: OMNISIFT_HTTP_TOKEN}     # API + dashboard at /
    history: {path: omnisift-data/history.sqlite3, max_age_days: 30, max_bytes: 1073741824}
    clips: {dir: omnisift-data/clips, chunks_before: 2, max_bytes: 2147483648}
    webhooks: {targets: [{name: ops, url: "https://hooks.example/omnisift", secret_env: OMNISIFT_HOOK_SECRET}]}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from omnisift.ratios import resolve_ratios
from omnisift.token_layout import DEFAULT_MODEL, PIXELS_PER_TOKEN
from pipeline.messages import (
    DEFAULT_MAX_NEW_TOKENS,
    MAX_NEW_TOKENS_LIMIT,
    STREAM_NAME,
    check_question,
)
from streams.config import Strict, load_source_config, read_yaml
from streams.errors import ConfigError
from streams.net import host_is_loopback, is_loopback
from streams.policy import SourcePolicy

DropPolicy = Literal["drop_oldest", "block"]
MAX_REPLICAS = 256


# A config file's entries and a client's requests are one model each (streams, standing questions): checked
# as strictly as a request (no string for a number, no NaN), which a YAML file meets as well
REQUEST = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class StreamConfig(Strict):
    """One stream: a unique name and its source (a mapping or a source YAML path, resolved on load). Also
    the body of the HTTP API's `POST /api/streams`."""

    model_config = REQUEST

    name: str = Field(min_length=1, max_length=64, pattern=STREAM_NAME)
    source: dict[str, Any]
    paused: bool = False


class WatchConfig(Strict):
    """A standing yes/no question evaluated as a stream's chunks arrive; an alert when p(yes) >= threshold.
    Also the body of the HTTP API's `POST /api/watches`."""

    model_config = REQUEST

    question: str = Field(min_length=1)  # its length is bounded by check_question (model.max_question_tokens)
    stream: str | None = Field(None, min_length=1, max_length=64, pattern=STREAM_NAME)  # None: every stream
    every: float = Field(2.0, ge=0.0, le=86400.0)  # seconds of media between evaluations (0: every chunk)
    threshold: float = Field(0.5, ge=0.0, le=1.0)


class EncoderBatchConfig(Strict):
    """How the encoder actor gathers the chunks of several streams into one forward of each tower
    (`pipeline.ray.batching.MicroBatcher`): at most `max_batch` chunks (one per stream), waiting at most
    `max_wait_ms` for a batch to fill (not at all when only one stream uses the encoder). `max_batch: 1`
    encodes one chunk at a time, one call at a time."""

    max_batch: int = Field(8, ge=1, le=64, strict=True)
    max_wait_ms: float = Field(5.0, ge=0.0, le=1000.0)


class ModelBatchConfig(Strict):
    """How the model actor's scheduler (`pipeline.session.scheduler.ModelScheduler`) runs the work of several
    streams: with `batch_prefill` the waiting chunks of up to `max_batch` streams go through one forward (and
    the decode steps of their answers through another); without it, one forward per chunk and per answer."""

    batch_prefill: bool = Field(True, strict=True)
    max_batch: int = Field(16, ge=1, le=64, strict=True)


class ModelConfig(Strict):
    path: str = DEFAULT_MODEL  # hub id or local folder
    fallback_tiny: bool = False  # weights missing -> the tiny random model, with a banner (demo only)
    compressor: str = "omnisift"
    compressor_options: dict[str, Any] = {}  # keyword options of that compressor, checked when actors start
    retention: float | None = Field(None, gt=0.0, le=1.0)
    rho_video: float | None = Field(None, ge=0.0, le=1.0)
    rho_audio: float | None = Field(None, ge=0.0, le=1.0)
    selector: str | None = None
    window_seconds: float | None = Field(120.0, ge=2.0)
    # frame bounds in pixels (min/max of width x height after resizing): None for max_pixels is the model
    # processor's own bound capped at 640 x 480 (at most 391 tokens per frame; README "Token budgets")
    min_pixels: int | None = Field(None, ge=PIXELS_PER_TOKEN)
    max_pixels: int | None = Field(None, ge=PIXELS_PER_TOKEN)
    max_question_tokens: int = Field(512, ge=1, le=32768, strict=True)  # a longer question is refused
    device: str | None = None
    dtype: str | None = None
    local_files_only: bool = False
    max_new_tokens: int = Field(DEFAULT_MAX_NEW_TOKENS, ge=1, le=MAX_NEW_TOKENS_LIMIT, strict=True)  # answer length
    min_append_seconds: float = Field(0.0, ge=0.0)  # pad each append to at least this (capacity tests)
    # model actors, each holding the contexts of a share of the streams (`pipeline.ray.sharding`); "auto": one
    # per GPU the Ray cluster has, at least 1. Each takes `resources.model`; more than one spread over nodes
    replicas: int | str = 1
    encoder_replicas: int | str | None = None  # encoder actors; None: as many as model replicas

    @field_validator("replicas", "encoder_replicas", mode="before")
    @classmethod
    def _replicas(cls, v: Any) -> Any:
        if v is None or v == "auto" or (type(v) is int and 1 <= v <= MAX_REPLICAS):
            return v
        raise ValueError(f"expected an integer in [1, {MAX_REPLICAS}] or 'auto'")
    encoder_batch: EncoderBatchConfig = EncoderBatchConfig()  # chunks of several streams in one tower forward
    model_batch: ModelBatchConfig = ModelBatchConfig()  # chunks (and answer steps) of several streams in one forward

    @model_validator(mode="after")
    def _ratios(self) -> ModelConfig:
        resolve_ratios(self.retention, self.rho_video, self.rho_audio)  # retention or ratios, not both
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} is more than max_pixels {self.max_pixels}")
        return self


class ActorResources(Strict):
    num_cpus: float = Field(0.0, ge=0.0)
    # None: the default split when the Ray cluster has GPUs (model 0.75 of a GPU of its own, encoder 0.25
    # beside it; pipeline/ray/placement.py), none otherwise. A number is taken as given, 0 included.
    num_gpus: float | None = Field(None, ge=0.0)
    resources: dict[str, float] = Field(default_factory=dict)  # custom node resources, e.g. {camera_node: 0.1}
    max_restarts: int = Field(3, ge=-1)


class ResourcesConfig(Strict):
    source: ActorResources = ActorResources(num_cpus=0.1)
    encoder: ActorResources = ActorResources(num_cpus=0.5)
    model: ActorResources = ActorResources(num_cpus=0.5)


class BackpressureConfig(Strict):
    """How much of a stream is in flight, what a full queue drops, and how long a chunk waits for an
    actor that is restarting.

    restart_wait: seconds a chunk keeps being sent again (re-encoded first if the encoder lost it) while
    the encoder or model actor restarts. Meanwhile newer chunks wait in the queues above and, once those
    are full, the drop policy applies (a live source drops its oldest, counted as `dropped`). A chunk not
    in the context by then, or whose actor is dead for good (its `max_restarts` used up), counts as `lost`.
    0 gives up at the first failure."""

    max_in_flight: int = Field(2, ge=1, le=64)  # chunks of one stream between its source and the model
    drop_policy: DropPolicy | None = None  # overrides each live source's policy; None: the source's own
    queue_size: int | None = Field(None, ge=1, le=4096)  # overrides each source's queue size
    restart_wait: float = Field(30.0, ge=0.0, le=3600.0)  # seconds; see above


class CurveConfig(Strict):
    """CURVE for the ZeroMQ sockets: the server's secret certificate and a folder of allowed client public
    certificates (`zmq.auth.create_certificates` format); None for `clients_dir` accepts any client."""

    server_secret_file: str
    clients_dir: str | None = None


class ZmqConfig(Strict):
    pub: str | None = "tcp://127.0.0.1:5560"  # answers, alerts, stats (JSON); None: off
    rep: str | None = "tcp://127.0.0.1:5561"  # questions from other processes; None: off
    curve: CurveConfig | None = None
    allow_insecure_remote: bool = False  # bind beyond loopback without CURVE (you are sure)

    @field_validator("pub", "rep")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError("expected tcp://HOST:PORT, ipc://PATH or inproc://NAME")
        return v

    @model_validator(mode="after")
    def _exposure(self) -> ZmqConfig:
        for field in ("pub", "rep"):
            ep = getattr(self, field)
            if ep and not is_loopback(ep) and self.curve is None and not self.allow_insecure_remote:
                raise ValueError(f"{field} {ep} binds beyond loopback: configure zmq.curve or set "
                                 "zmq.allow_insecure_remote: true")
        return self


class MetricsConfig(Strict):
    """Prometheus /metrics. Loopback unless `host` says otherwise; the endpoint has no authentication, so
    any other host needs `allow_remote: true` (you put it behind something that guards it)."""

    port: int | None = Field(9464, ge=0, le=65535)  # None: off; 0: any free port
    host: str = Field("127.0.0.1", min_length=1)
    allow_remote: bool = False  # serve /metrics beyond loopback (it has no authentication)

    @model_validator(mode="after")
    def _exposure(self) -> MetricsConfig:
        if self.port is not None and not host_is_loopback(self.host) and not self.allow_remote:
            raise ValueError(f"metrics.host {self.host} is not loopback and /metrics has no authentication: "
                             "set metrics.allow_remote: true to serve it there")
        return self


class HttpConfig(Strict):
    """The HTTP API and the dashboard (`pipeline.serve.http`). Loopback unless `host` says otherwise; any
    other host needs a bearer token, read from the environment variable `token_env` when the server
    starts (never from the config, never logged): without one the server refuses to start. A token set
    on loopback is required too."""

    port: int | None = Field(8321, ge=0, le=65535)  # None: off; 0: any free port
    host: str = Field("127.0.0.1", min_length=1)
    token_env: str = Field("OMNISIFT_HTTP_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)  # larger requests get 413
    # names the server answers to besides its bound address (and, on loopback, localhost/127.0.0.1/[::1]): a
    # request whose Host header names anything else is refused (DNS rebinding); e.g. [omnisift.lan]
    allowed_hosts: list[str] = Field(default_factory=list)
    # origins (scheme://host[:port]) whose pages may change state (POST, DELETE) besides the server's own
    allowed_origins: list[str] = Field(default_factory=list)

    @property
    def loopback(self) -> bool:
        return host_is_loopback(self.host)


class HistoryConfig(Strict):
    """The persistent event history (`pipeline.serve.history`): SQLite in WAL mode, written by a thread
    of its own from a bounded queue (a full queue loses the record and counts it; chunks never wait).
    Retention: records older than `max_age_days` and, past `max_bytes`, the oldest ones are deleted."""

    path: str | None = "omnisift-data/history.sqlite3"  # None: off
    max_age_days: float = Field(30.0, gt=0.0, le=36500.0)
    max_bytes: int = Field(1 << 30, ge=64 * 1024)
    queue_size: int = Field(4096, ge=1, le=1_000_000)
    stats: bool = False  # also one record per chunk (large: one row every 2 s per stream)


class ClipsConfig(Strict):
    """Alert clips (`pipeline.serve.clips`): the media of the alert's chunk and `chunks_before` chunks
    before it as MP4 (H.264 + AAC) with a JSON sidecar; the oldest are deleted past `max_bytes`. The
    driver keeps each stream's last `chunks_before + 1` chunks in Ray's object store for this."""

    dir: str | None = "omnisift-data/clips"  # None: off
    chunks_before: int = Field(2, ge=0, le=15)
    max_bytes: int = Field(2 << 30, ge=1 << 20)
    queue_size: int = Field(8, ge=1, le=256)  # clips waiting to be encoded; more are skipped and counted


class WebhookTarget(Strict):
    """One receiver: `url` gets a POST of each event's JSON, signed `X-OmniSIFT-Signature: sha256=<hex>`
    (HMAC-SHA256 of the body with the secret in the environment variable `secret_env`, if given)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")  # in metrics and history
    url: str = Field(min_length=8, max_length=2048)
    secret_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    events: list[Literal["alert", "answer"]] = Field(default_factory=lambda: ["alert"], min_length=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        return v


class WebhooksConfig(Strict):
    """Webhook delivery (`pipeline.serve.webhooks`): a bounded queue per target (full: the event is
    dropped and counted), `max_attempts` tries with exponential backoff from `backoff` seconds (doubling,
    at most `backoff_max`), each bounded by `timeout` seconds."""

    targets: list[WebhookTarget] = Field(default_factory=list)
    queue_size: int = Field(256, ge=1, le=100_000)
    max_attempts: int = Field(5, ge=1, le=100)
    backoff: float = Field(0.5, gt=0.0, le=60.0)
    backoff_max: float = Field(30.0, gt=0.0, le=3600.0)
    timeout: float = Field(5.0, gt=0.0, le=120.0)

    @model_validator(mode="after")
    def _unique(self) -> WebhooksConfig:
        names = [t.name for t in self.targets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"webhook target names must be unique, {dup[0]!r} repeats")
        return self


class LimitsConfig(Strict):
    """Bounds on what clients may add to a running pipeline (`docs/security.md`). Streams in the config
    file count against `max_streams` but are never refused by it; every stream's source must open within
    `source_open_timeout` seconds, or it is refused and its actor ended."""

    max_streams: int = Field(16, ge=1, le=4096)  # streams at once; a client's add beyond it is refused (403)
    max_watches: int = Field(64, ge=0, le=100_000)  # standing questions clients added, in all
    max_watches_per_stream: int = Field(8, ge=0, le=10_000)  # of them on one stream (or on every stream)
    min_watch_every: float = Field(2.0, ge=0.0, le=86400.0)  # seconds of media; a client's watch more often: 422
    adds_per_minute: int = Field(30, ge=1, le=100_000)  # stream and watch adds per client address (then 429)
    source_open_timeout: float = Field(30.0, gt=0.0, le=3600.0)  # seconds for a new stream's source to open


class RayConfig(Strict):
    address: str | None = None  # None: start Ray locally; "auto" or ray://host:10001 joins a cluster
    num_cpus: int | None = Field(None, ge=1)  # local Ray only
    namespace: str = "omnisift"
    # a local Ray's servers listen on 127.0.0.1 only; true: on the node's network address, so other machines
    # can join it (`pipeline.ray.local`)
    allow_remote: bool = False
    actor_start_timeout: float = Field(600.0, gt=0)  # seconds for actors to be placed and load the model

    @model_validator(mode="after")
    def _remote_is_for_a_local_ray(self) -> RayConfig:
        if self.allow_remote and self.address is not None:
            raise ValueError("ray.allow_remote is for a Ray this run starts; with ray.address the cluster's "
                             "own settings decide where it listens")
        return self


class PipelineConfig(Strict):
    streams: list[StreamConfig] = Field(default_factory=list)
    model: ModelConfig = ModelConfig()
    watch: list[WatchConfig] = Field(default_factory=list)
    ask_every: float | None = Field(None, gt=0.0)  # `omnisift run`: ask `question` this often (media seconds)
    question: str = "What is happening?"
    backpressure: BackpressureConfig = BackpressureConfig()
    resources: ResourcesConfig = ResourcesConfig()
    zmq: ZmqConfig = ZmqConfig()
    metrics: MetricsConfig = MetricsConfig()
    http: HttpConfig = HttpConfig()
    history: HistoryConfig = HistoryConfig()
    clips: ClipsConfig = ClipsConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    ray: RayConfig = RayConfig()
    runtime_sources: SourcePolicy = SourcePolicy()  # what clients may add while running; nothing unless said
    limits: LimitsConfig = LimitsConfig()

    @model_validator(mode="after")
    def _unique(self) -> PipelineConfig:
        names = [s.name for s in self.streams]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stream names must be unique, {dup[0]!r} repeats")
        for w in self.watch:
            if w.stream is not None and w.stream not in names:
                raise ValueError(f"watch names stream {w.stream!r}, which is not in streams")
        for what, question in [("question", self.question)] + [("watch question", w.question) for w in self.watch]:
            try:  # the cheap bound now; the one in tokens when the model first tokenizes it
                check_question(question, self.model.max_question_tokens)
            except ValueError as e:
                raise ValueError(f"{what}: {e}") from None
        return self

    def stream(self, name: str) -> StreamConfig:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(name)


def source_mapping(source: Any, base: Path | None = None) -> dict[str, Any]:
    """A stream's source as a validated mapping (a YAML path is read; relative paths try `base` first)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_absolute() and base is not None and (base / path).exists():
            path = base / path
        source = path
    return load_source_config(source).model_dump(mode="json")


def load_pipeline_config(obj: Any, **overrides: Any) -> PipelineConfig:
    """Validate a pipeline config given as a mapping, a `PipelineConfig`, or a YAML path.

    overrides: top-level fields replaced before validation (e.g. `model={...}`)."""
    if isinstance(obj, PipelineConfig) and not overrides:
        return obj
    base = None
    if isinstance(obj, PipelineConfig):
        obj = obj.model_dump()
    elif isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        obj = read_yaml(path, "pipeline config")
        base = path.parent
    if not isinstance(obj, dict):
        raise ConfigError(f"pipeline config: expected a mapping, got {type(obj).__name__}")
    obj = {**obj, **overrides}
    streams = obj.get("streams") or []
    if not isinstance(streams, list):
        raise ConfigError("pipeline config: field 'streams' must be a list of {name, source}")
    resolved = []
    for i, s in enumerate(streams):
        if isinstance(s, dict) and "source" in s:
            try:
                s = {**s, "source": source_mapping(s["source"], base)}
            except ConfigError as e:
                raise ConfigError(f"pipeline config: streams[{i}] ({s.get('name', '?')}): {e}") from None
        resolved.append(s)
    obj["streams"] = resolved
    try:
        return PipelineConfig.model_validate(obj)
    except ValidationError as e:
        raise ConfigError(_describe(e.errors()[0])) from None


def _describe(err: dict[str, Any]) -> str:
    field = ".".join(str(p) for p in err.get("loc", ()))
    msg = err.get("msg", "invalid").replace("Value error, ", "")
    if err.get("type") == "missing":
        return f"pipeline config: field '{field}' is required"
    if err.get("type") == "extra_forbidden":
        return f"pipeline config: unknown field '{field}'"
    value = err.get("input")
    if isinstance(value, (dict, list)):
        value = "{...}" if isinstance(value, dict) else "[...]"
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."  # a 5,000-character question is not repeated
    where = f"field '{field}'" if field else "config"
    return f"pipeline config: {where} has bad value {shown}: {msg}"
