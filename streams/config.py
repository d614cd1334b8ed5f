"""Validated source configurations: one pydantic model per source type, discriminated on `type`.

`load_source_config` accepts a mapping, a config object, or a path to a YAML file (either the mapping itself
or a mapping with a `source:` key) and raises `ConfigError` with one line naming the field and the bad value.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .errors import ConfigError
from .net import endpoint_host, host_is_loopback
from .redact import redact_url

DropPolicy = Literal["drop_oldest", "block"]


class Strict(BaseModel):
    """The base of every config model of the project: unknown fields refused, frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Base(Strict):

    name: str | None = None  # stream name on every chunk; defaults to the source type
    queue_size: int = Field(8, ge=1, le=4096)  # chunks buffered between the source thread and the consumer
    drop_policy: DropPolicy | None = None  # None: drop_oldest for live sources, block for fast file reads
    max_width: int | None = Field(None, ge=16, le=16384)  # cap on decoded frame size, aspect kept
    max_height: int | None = Field(None, ge=16, le=16384)

    @property
    def live(self) -> bool:
        return True

    @property
    def policy(self) -> DropPolicy:
        return self.drop_policy or ("drop_oldest" if self.live else "block")


class Backoff(Strict):
    """Waits between tries, the one rule of the project (source reconnects, webhook deliveries): exponential
    with jitter, delay_n = min(max_delay, initial_delay * factor**n) * (1 +- jitter), n from 0."""

    initial_delay: float = Field(0.5, gt=0, le=60)
    max_delay: float = Field(10.0, gt=0, le=3600)
    factor: float = Field(2.0, ge=1, le=10)
    jitter: float = Field(0.2, ge=0, le=1)
    max_attempts: int | None = Field(None, ge=1)  # None: retry forever

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before try `attempt` + 1 (`attempt` from 0); `rng` draws the jitter."""
        base = min(self.max_delay, self.initial_delay * self.factor**attempt)
        spread = 0.0 if self.jitter == 0 else self.jitter * (rng or random).uniform(-1.0, 1.0)
        return max(0.0, base * (1.0 + spread))


class FileSourceConfig(_Base):
    type: Literal["file"]
    path: Path
    realtime: bool = False  # pace by timestamps like a live feed
    speed: float = Field(1.0, gt=0, le=1000)  # realtime pacing factor (2.0 plays twice as fast)
    loop: bool = False

    @property
    def live(self) -> bool:
        return self.realtime


class RtspSourceConfig(_Base):
    type: Literal["rtsp"]
    url: str
    transport: Literal["tcp", "udp"] = "tcp"
    connect_timeout: float = Field(5.0, gt=0, le=120)
    read_timeout: float = Field(5.0, gt=0, le=120)
    username_env: str | None = None  # name of the environment variable holding the user name
    password_env: str | None = None  # name of the environment variable holding the password
    reconnect: Backoff = Backoff()

    @field_validator("url")
    @classmethod
    def _rtsp_scheme(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("rtsp", "rtsps") or not urlsplit(v).hostname:
            raise ValueError("must be an rtsp:// or rtsps:// URL with a host")
        return v

    def __repr_args__(self):
        for k, v in super().__repr_args__():
            yield k, redact_url(v) if k == "url" else v

    def resolved_url(self) -> str:
        """The URL with credentials from the named environment variables (read now, never logged)."""
        parts = urlsplit(self.url)
        user, password = parts.username, parts.password
        for attr, env in (("username_env", self.username_env), ("password_env", self.password_env)):
            if env is not None and env not in os.environ:
                raise ConfigError(f"source config: field '{attr}' names environment variable {env!r}, which is not set")
        if self.username_env:
            user = os.environ[self.username_env]
        if self.password_env:
            password = os.environ[self.password_env]
        if user is None:
            return self.url
        from urllib.parse import quote

        cred = quote(user, safe="") + (":" + quote(password, safe="") if password is not None else "")
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=f"{cred}@{host}").geturl()


class WebcamSourceConfig(_Base):
    """A V4L2 camera read through the system `ffmpeg` binary (see `streams.device`)."""

    type: Literal["webcam"]
    device: str = "/dev/video0"
    width: int | None = Field(None, ge=16, le=16384)  # capture size asked of the device
    height: int | None = Field(None, ge=16, le=16384)
    fps: float | None = Field(None, gt=0, le=240)
    input_format: str = "v4l2"  # ffmpeg input format (-f); tests use lavfi
    ffmpeg: str = "ffmpeg"


class MicrophoneSourceConfig(_Base):
    """An ALSA or PulseAudio capture device read through the system `ffmpeg` binary."""

    type: Literal["microphone"]
    backend: Literal["alsa", "pulse", "lavfi"] = "alsa"
    device: str = "default"
    ffmpeg: str = "ffmpeg"


class SyntheticSourceConfig(_Base):
    """FFmpeg test patterns and tones through PyAV's lavfi (no system packages needed)."""

    type: Literal["synthetic"]
    video: bool = True
    audio: bool = True
    pattern: Literal["testsrc", "testsrc2", "smptebars", "rgbtestsrc", "mandelbrot"] = "testsrc"
    width: int = Field(320, ge=16, le=4096)
    height: int = Field(240, ge=16, le=4096)
    fps: float = Field(25.0, gt=0, le=120)
    frequency: float = Field(440.0, gt=0, le=20000)
    duration: float | None = Field(10.0, gt=0)  # None: endless
    realtime: bool = False

    @property
    def live(self) -> bool:
        return self.realtime

    @field_validator("audio")
    @classmethod
    def _some_media(cls, v: bool, info: ValidationInfo) -> bool:
        if not (v or info.data.get("video", True)):
            raise ValueError("video and audio cannot both be false")
        return v


class WorldSourceConfig(_Base):
    """The synthetic monitoring world (`streams.world`): media and a ground-truth event log from a seed."""

    type: Literal["world"]
    seed: int = Field(0, ge=0)
    scenario: Literal["quiet", "standard", "busy"] = "standard"  # streams.world.SCENARIOS
    width: int = Field(224, ge=32, le=4096, multiple_of=2)
    height: int = Field(224, ge=32, le=4096, multiple_of=2)
    fps: float = Field(2.0, gt=0, le=60)
    duration: float | None = Field(600.0, gt=0)  # None: endless
    realtime: bool = False  # pace like a live feed; false: as fast as it is read
    speed: float = Field(1.0, gt=0, le=1000)  # realtime pacing factor

    @property
    def live(self) -> bool:
        return self.realtime


class ZmqSourceConfig(_Base):
    """External producers push frames and audio over ZeroMQ; wire format in `streams.zmq_source`."""

    type: Literal["zmq"]
    bind: bool = True  # bind the PULL socket (producers connect); false: connect to a producer's PUSH
    allow_remote: bool = False  # must be true to bind to a non-loopback address
    endpoint: str = "tcp://127.0.0.1:5555"
    video: bool = True
    audio: bool = True
    max_message_bytes: int = Field(64 << 20, ge=1024)
    idle_timeout: float | None = Field(None, gt=0)  # end the stream after this long without a message

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str, info: ValidationInfo) -> str:
        if not (v.startswith("tcp://") or v.startswith("ipc://") or v.startswith("inproc://")):
            raise ValueError("must start with tcp://, ipc:// or inproc://")
        if v.startswith("tcp://") and info.data.get("bind", True) and not info.data.get("allow_remote", False):
            if not host_is_loopback(endpoint_host(v)):
                raise ValueError("binds beyond loopback; set allow_remote: true to allow it")
        return v

    @field_validator("audio")
    @classmethod
    def _some_media(cls, v: bool, info: ValidationInfo) -> bool:
        if not (v or info.data.get("video", True)):
            raise ValueError("video and audio cannot both be false")
        return v


_SINGLE_TYPES = (
    FileSourceConfig,
    RtspSourceConfig,
    WebcamSourceConfig,
    MicrophoneSourceConfig,
    SyntheticSourceConfig,
    ZmqSourceConfig,
    WorldSourceConfig,
)
_Single = Annotated[Union[_SINGLE_TYPES], Field(discriminator="type")]  # noqa: UP007 - a Union of a tuple of types


class CombinedSourceConfig(_Base):
    """Video from one source and audio from another (camera + microphone) as one stream.

    align: "media" trusts both sources' timestamps to share a clock (two files); "wall" maps each source's
    first timestamp to the wall-clock time it arrived (independent live devices). Default: wall if either
    source is live, else media.
    """

    type: Literal["combined"]
    video: _Single
    audio: _Single
    align: Literal["media", "wall"] | None = None

    @property
    def live(self) -> bool:
        return self.video.live or self.audio.live

    @property
    def alignment(self) -> str:
        return self.align or ("wall" if self.live else "media")


SourceConfig = Annotated[Union[(*_SINGLE_TYPES, CombinedSourceConfig)], Field(discriminator="type")]
_ADAPTER: TypeAdapter = TypeAdapter(SourceConfig)
SOURCE_TYPES = ("file", "rtsp", "webcam", "microphone", "synthetic", "zmq", "world", "combined")


def _describe(err: dict[str, Any], raw: Any) -> str:
    loc = [str(p) for p in err.get("loc", ())]
    # drop discriminator tags (e.g. 'rtsp') and pydantic's function-validator labels from the path
    path = [p for p in loc if p not in SOURCE_TYPES and not p.startswith("function-")]
    field = ".".join(path) or "type"
    value = err.get("input")
    if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        value = err.get("input", {}).get("type") if isinstance(err.get("input"), dict) else err.get("input")
        return f"source config: field 'type' has bad value {value!r}: expected one of {', '.join(SOURCE_TYPES)}"
    if err.get("type") == "missing":
        return f"source config: field '{field}' is required"
    if isinstance(value, str) and "://" in value:
        value = redact_url(value)
    if isinstance(value, dict):
        value = "{...}"
    msg = err.get("msg", "invalid").replace("Value error, ", "").replace("\n", " ")
    return f"source config: field '{field}' has bad value {value!r}: {msg}"


def read_yaml(path: str | os.PathLike, what: str) -> Any:
    """The YAML document at `path`; a missing or malformed file is a one-line ConfigError naming `what`.

    The one YAML reader of the project: source, pipeline, training and evaluation configs all use it."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{what}: file {str(path)!r} not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what}: {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None


def load_source_config(obj: Any) -> SourceConfig:
    """Validate a source config given as a mapping, a config object, or a YAML file path."""
    if isinstance(obj, BaseModel):
        if isinstance(obj, _Base):
            return obj
        obj = obj.model_dump()
    if isinstance(obj, (str, os.PathLike)):
        obj = read_yaml(obj, "source config")
    if isinstance(obj, dict) and "type" not in obj and isinstance(obj.get("source"), dict):
        obj = obj["source"]
    if not isinstance(obj, dict):
        raise ConfigError(f"source config: expected a mapping with a 'type' field, got {type(obj).__name__}")
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as e:
        raise ConfigError(_describe(e.errors()[0], obj)) from None
