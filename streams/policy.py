"""Which sources a client may add to a running pipeline: the operator's policy, deny by default.

A config file is the operator's and may name any source it likes. A source asked for at runtime (the HTTP
API, the Python API called on a client's behalf) is the client's, and a source config can do a lot on the
host: the `ffmpeg` field names a program to run, `input_format: lavfi` takes an FFmpeg filter graph (which
can write files), a `zmq` endpoint can be an `ipc://` path (a file replaced by a socket), `username_env`
names any variable of the server's environment (sent to a server of the caller's choice), a URL or
`device` can make the server connect anywhere. So `admit(raw, policy)` lets through only what the operator's
`SourcePolicy` allows and returns the config to open; anything else raises `SourceRefused` with one line
naming the field and the rule (the HTTP API answers 403).

    runtime_sources:
      types: [rtsp, file, synthetic]
      rtsp: {hosts: [10.0.0.0/24, cam-door.lan],
             credentials: {door: {username_env: CAM_USER, password_env: CAM_PASS, hosts: [10.0.0.5]}}}
      file: {folders: [/srv/media]}

Rules, per source type (every field not named here is taken as the source config allows it):

- never from a client: `ffmpeg`, `username_env`, `password_env`, `allow_remote`; `input_format` other
  than `v4l2`; `backend: lavfi`; `ipc://` and `inproc://` endpoints.
- rtsp: the URL's host is one of `rtsp.hosts` (a name, compared without case, or an address in a listed
  network); credentials come only from a named set of `rtsp.credentials` (`"credentials": "door"` in the
  request), and only to that set's own hosts. User information the client writes in its URL is its own.
- file: the path, symlinks resolved, is a regular file under one of `file.folders`; the resolved path is
  what opens (a FIFO, a device or a link out of the folder is refused).
- zmq: `tcp://` to a loopback host or one of `zmq.hosts`; connecting (`bind: false`) only with
  `zmq.connect: true`.
- webcam / microphone: a `device` listed in `webcam.devices` / `microphone.devices`.
- combined: both of its sources pass on their own, and `combined` is in `types`.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from .config import SOURCE_TYPES, SourceConfig, Strict, ZmqSourceConfig, load_source_config
from .errors import SourceRefused
from .net import endpoint_host, host_is_loopback

SourceType = Literal["file", "rtsp", "webcam", "microphone", "synthetic", "zmq", "world", "combined"]
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# fields that name a program, a file or a variable on the host: a client never sets them
NEVER_FROM_A_CLIENT = ("ffmpeg", "username_env", "password_env", "allow_remote")
DEVICE_INPUT_FORMATS = ("v4l2",)
DEVICE_BACKENDS = ("alsa", "pulse")
ZMQ_DEFAULT_ENDPOINT = ZmqSourceConfig.model_fields["endpoint"].default


def _check_hosts(hosts: list[str]) -> list[str]:
    for h in hosts:
        if "/" in h:
            ipaddress.ip_network(h, strict=False)  # a bad network is a ValueError naming it
        elif not h or any(c in h for c in " @/*?"):
            raise ValueError(f"{h!r} is not a host name, an address or a network (CIDR)")
    return hosts


Hosts = Annotated[list[str], AfterValidator(_check_hosts)]  # names, addresses and networks (10.0.0.0/24)


class Credentials(Strict):
    """User name and password of a camera, read from the operator's environment when the source opens,
    and sent only to `hosts`."""

    username_env: str = Field(pattern=ENV_NAME)
    password_env: str | None = Field(None, pattern=ENV_NAME)
    hosts: Hosts = Field(min_length=1)


class RtspRule(Strict):
    hosts: Hosts = Field(default_factory=list)  # names and networks a client's RTSP URL may point at
    credentials: dict[str, Credentials] = Field(default_factory=dict)  # named sets a client may ask for


class FileRule(Strict):
    folders: list[str] = Field(default_factory=list)  # a client's file must resolve to a regular file under one


class ZmqRule(Strict):
    hosts: Hosts = Field(default_factory=list)  # tcp hosts besides loopback a client's endpoint may name
    connect: bool = False  # may a client's source connect (`bind: false`) to a producer


class DeviceRule(Strict):
    devices: list[str] = Field(default_factory=list)  # device names a client may open, exactly as written


class SourcePolicy(Strict):
    """What a client may add to a running pipeline (see the module docstring); empty: nothing."""

    types: list[SourceType] = Field(default_factory=list)
    rtsp: RtspRule = RtspRule()
    file: FileRule = FileRule()
    zmq: ZmqRule = ZmqRule()
    webcam: DeviceRule = DeviceRule()
    microphone: DeviceRule = DeviceRule()


def admit(raw: Any, policy: SourcePolicy) -> SourceConfig:
    """The source config a client asked for, if the operator's `policy` allows it: validated, with a file's
    path resolved and named credentials filled in. Raises `SourceRefused` (one line naming the field and the
    rule) for what the policy does not allow, `ConfigError` for what is not a source config at all."""
    if not isinstance(raw, dict):
        load_source_config(raw)  # the one-line ConfigError for what is not a mapping
    return _admit(dict(raw), policy, "")


def _admit(raw: dict[str, Any], policy: SourcePolicy, where: str) -> SourceConfig:
    kind = raw.get("type")
    # every source type there is, listed or not (a type added later is refused until a policy names it);
    # a `type` that is no source type at all is left to validation, which names it
    if isinstance(kind, str) and kind in SOURCE_TYPES and kind not in policy.types:
        allowed = ", ".join(policy.types) or "none"
        raise SourceRefused(f"source {where}type {kind!r} may not be added at runtime "
                            f"(runtime_sources.types allows: {allowed})")
    for field in NEVER_FROM_A_CLIENT:
        if field in raw:
            raise SourceRefused(f"source field '{where}{field}' is never taken from a runtime request "
                                f"(it names a program, a variable or an exposure on the host)")
    credentials = raw.pop("credentials", None) if kind == "rtsp" else None
    if kind == "zmq":
        raw = _zmq(raw, policy, where)
    if kind == "combined":
        parts = {}
        for part in ("video", "audio"):
            if not isinstance(raw.get(part), dict):
                break  # validation below names it
            parts[part] = _admit(dict(raw[part]), policy, f"{where}{part}.").model_dump(mode="json")
        raw = {**raw, **parts}
    config = load_source_config(raw)
    check = _CHECKS.get(config.type)
    if check is None:
        return config
    update = check(config, policy, where, credentials)
    return config if not update else load_source_config({**config.model_dump(mode="json"), **update})


def _rtsp(config, policy: SourcePolicy, where: str, credentials: Any) -> dict:
    host = urlsplit(config.url).hostname or ""
    if not _host_in(host, policy.rtsp.hosts):
        raise SourceRefused(f"source field '{where}url' names host {host!r}, which runtime_sources.rtsp.hosts "
                            "does not allow")
    if credentials is None:
        return {}
    if not isinstance(credentials, str) or credentials not in policy.rtsp.credentials:
        shown = repr(credentials)[:40] if isinstance(credentials, str) else type(credentials).__name__
        raise SourceRefused(f"source field '{where}credentials' names {shown}, which is not a credential set of "
                            "runtime_sources.rtsp.credentials")
    cred = policy.rtsp.credentials[credentials]
    if not _host_in(host, cred.hosts):
        raise SourceRefused(f"source field '{where}credentials': set {credentials!r} is not for host {host!r}")
    return {"username_env": cred.username_env, "password_env": cred.password_env}


def _file(config, policy: SourcePolicy, where: str, _credentials: Any) -> dict:
    path = Path(os.path.abspath(config.path)).resolve()  # symlinks resolved, as far as they exist
    folders = [Path(f).resolve() for f in policy.file.folders]
    if not any(path.is_relative_to(f) for f in folders):
        raise SourceRefused(f"source field '{where}path' is not under a folder of runtime_sources.file.folders")
    try:
        mode = path.stat().st_mode
    except OSError:
        return {"path": str(path)}  # missing: the source says so in its own words when it opens
    if not stat.S_ISREG(mode):
        raise SourceRefused(f"source field '{where}path' is not a regular file (a FIFO, device or folder)")
    return {"path": str(path)}


def _zmq(raw: dict[str, Any], policy: SourcePolicy, where: str) -> dict[str, Any]:
    """The zmq rules, on the request before validation: a listed host beyond loopback needs `allow_remote`
    to validate, which the client may not set but the policy then does."""
    endpoint, bind = raw.get("endpoint", ZMQ_DEFAULT_ENDPOINT), raw.get("bind", True)
    if not isinstance(endpoint, str) or not isinstance(bind, bool):
        return raw  # validation names it
    if not endpoint.startswith("tcp://"):
        raise SourceRefused(f"source field '{where}endpoint' must be tcp:// at runtime (ipc:// and inproc:// "
                            "name things on the host)")
    if not bind and not policy.zmq.connect:
        raise SourceRefused(f"source field '{where}bind' is false, and runtime_sources.zmq.connect does not "
                            "allow connecting out")
    host = endpoint_host(endpoint)
    loopback = host_is_loopback(host)
    if not loopback and not _host_in(host, policy.zmq.hosts):
        raise SourceRefused(f"source field '{where}endpoint' names host {host!r}, which is not loopback or in "
                            "runtime_sources.zmq.hosts")
    return raw if loopback or not bind else {**raw, "allow_remote": True}


def _device(rule_name: str):
    def check(config, policy: SourcePolicy, where: str, _credentials: Any) -> dict:
        if config.type == "webcam" and config.input_format not in DEVICE_INPUT_FORMATS:
            raise SourceRefused(f"source field '{where}input_format' must be one of "
                                f"{', '.join(DEVICE_INPUT_FORMATS)} at runtime")
        if config.type == "microphone" and config.backend not in DEVICE_BACKENDS:
            raise SourceRefused(f"source field '{where}backend' must be one of {', '.join(DEVICE_BACKENDS)} "
                                "at runtime")
        if config.device not in getattr(policy, rule_name).devices:
            raise SourceRefused(f"source field '{where}device' names a device that "
                                f"runtime_sources.{rule_name}.devices does not list")
        return {}

    return check


_CHECKS = {"rtsp": _rtsp, "file": _file, "webcam": _device("webcam"),
           "microphone": _device("microphone")}


def _host_in(host: str, allowed: list[str]) -> bool:
    """Whether `host` (a URL's host) is one of `allowed`: a name (compared without case; no DNS lookup, so
    a name matches only a listed name) or an address inside a listed network."""
    host = host.strip("[]").lower()
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in allowed:
        if "/" in entry:
            if ip is not None and ip in ipaddress.ip_network(entry, strict=False):
                return True
        elif entry.strip("[]").lower() == host:
            return True
    return False
