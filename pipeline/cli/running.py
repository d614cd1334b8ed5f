"""Where a running pipeline answers: `omnisift run` and `omnisift demo` write the endpoints they bound to a
small JSON file while they run, and `omnisift ask` without `--endpoint` reads it.

    $OMNISIFT_RUNTIME_DIR, else $XDG_RUNTIME_DIR/omnisift, else ~/.cache/omnisift/running
        <pid>.json   {"pid", "command", "started", "streams": [...], "endpoints": {"rep", "pub", "http", ...}}

One file per running process, removed when it stops; a file whose process is gone (killed before it
could remove it) is ignored and removed by the next reader. Not a command module.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path


def runtime_dir(environ: dict | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("OMNISIFT_RUNTIME_DIR"):
        return Path(env["OMNISIFT_RUNTIME_DIR"])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "omnisift"
    return Path.home() / ".cache" / "omnisift" / "running"


@contextlib.contextmanager
def announced(command: str, endpoints: dict[str, str], streams: list[str],
              folder: Path | None = None) -> Iterator[Path | None]:
    """This process's endpoints in `folder` (default `runtime_dir()`) while the block runs. A folder that
    cannot be written is not fatal: `ask` then needs `--endpoint`; yields the file, or None."""
    folder = runtime_dir() if folder is None else folder
    path = folder / f"{os.getpid()}.json"
    record = {"pid": os.getpid(), "command": command, "started": time.time(), "streams": streams,
              "endpoints": endpoints}
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(record))
        partial.replace(path)  # readers never see half a file
    except OSError:
        path = None
    try:
        yield path
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


def running(folder: Path | None = None) -> list[dict]:
    """The records of the pipelines running now, oldest first; stale files are removed."""
    folder = runtime_dir() if folder is None else folder
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
            alive = _alive(int(record["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if alive:
            found.append(record)
        else:
            path.unlink(missing_ok=True)
    return sorted(found, key=lambda r: r.get("started", 0.0))


class NotRunning(ValueError):
    """No pipeline has announced itself here."""


def find_rep(stream: str | None, folder: Path | None = None) -> str:
    """The REP endpoint of the one running pipeline (the one serving `stream`, if named). One-line
    ValueError saying where to point `omnisift ask` when there is none, or several to choose from."""
    folder = runtime_dir() if folder is None else folder
    records = [r for r in running(folder) if r.get("endpoints", {}).get("rep")]
    if stream is not None:
        records = [r for r in records if stream in r.get("streams", [])] or records
    if not records:
        raise NotRunning(f"no running omnisift run or demo found (none has announced itself in {folder})")
    if len(records) > 1:
        listed = "; ".join(f"pid {r['pid']} ({r['command']}, streams {', '.join(r['streams']) or '-'}): "
                           f"{r['endpoints']['rep']}" for r in records)
        raise ValueError(f"{len(records)} pipelines are running, choose one with --endpoint: {listed}")
    return records[0]["endpoints"]["rep"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
