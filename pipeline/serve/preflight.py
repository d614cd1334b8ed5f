"""What a pipeline's network faces and records need from this machine, checked before anything slow starts.

`check_before_start(config)` raises one-line `ValueError`s for a fixed port something already listens on
(`http.port`, `metrics.port`, the ZeroMQ endpoints' `tcp://host:port`) and for a history file or clips
folder that cannot be written, so `omnisift run` and `omnisift demo` refuse them at once instead of after
Ray and the model have started. A port freed or taken in between is still reported where it is bound.
Port 0, `*` and ipc endpoints are not checked (any free port will do).
"""

from __future__ import annotations

import errno
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig


def check_before_start(config: PipelineConfig) -> None:
    """Raise ValueError (one line) for the first port in use or place that cannot be written."""
    if config.http.port:
        _check_port("http.port", config.http.host, config.http.port)
    if config.metrics.port:
        _check_port("metrics.port", config.metrics.host, config.metrics.port)
    for field, endpoint in (("zmq.pub", config.zmq.pub), ("zmq.rep", config.zmq.rep)):
        hostport = _tcp_host_port(endpoint)
        if hostport is not None:
            _check_port(field, *hostport)
    if config.history.path:
        _check_file("history.path", Path(config.history.path))
    if config.clips.dir:
        _check_folder("clips.dir", Path(config.clips.dir))


def _tcp_host_port(endpoint: str | None) -> tuple[str, int] | None:
    """(host, port) of a `tcp://host:port` endpoint with a fixed port; None for any other."""
    if not endpoint or not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return None
    host = host.strip("[]")
    return ("0.0.0.0" if host in ("*", "") else host), int(port)


def _check_port(field: str, host: str, port: int) -> None:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as err:
        raise ValueError(f"{field}: host {host!r} does not resolve ({err.strerror})") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no use
        try:
            sock.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ValueError(f"{field} {port} on {host} is already in use (another omnisift run or demo?): "
                                 "stop what listens there or choose another port (0: any free one)") from None
            raise ValueError(f"{field} {port} on {host}: cannot listen there ({err.strerror})") from None


def _check_folder(field: str, folder: Path, shown: Path | None = None) -> None:
    """The folder exists or can be made, and a file can be created in it (the real test, root or not)."""
    shown = folder if shown is None else shown
    in_the_way = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if in_the_way is not None:
        raise ValueError(f"{field} {shown}: cannot write there ({in_the_way} is a file, not a folder)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"{field} {shown}: cannot write there ({err.strerror or err})") from None


def _check_file(field: str, path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"{field} {path}: is a folder; give a file path (e.g. {path / 'history.sqlite3'})")
    _check_folder(field, path.parent, shown=path)
    if path.exists():
        try:
            with open(path, "ab"):
                pass
        except OSError as err:
            raise ValueError(f"{field} {path}: cannot write it ({err.strerror or err})") from None
