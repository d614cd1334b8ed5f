"""Offline inference on a file: the streaming path run as fast as the file can be decoded.

`infer_file` reads a container through `streams` (PyAV), appends every chunk to an `OmniSession`
and asks the question at the end, so a file is answered by exactly the code that answers live
streams. The audio is never cut: every 2-second chunk of it reaches the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omnisift.counts import TokenCounts
from pipeline.session import OmniSession
from streams import load_source_config, producer_factory, read_chunks
from streams.errors import SourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileAnswer:
    text: str
    counts: TokenCounts
    chunks: int
    seconds: float
    has_audio: bool


def _file_source(path: Path) -> dict:
    return {"type": "file", "path": str(path), "realtime": False}


def check_video_file(path: str | Path) -> None:
    """Open the file as `infer_file` will and close it again: a missing file, one that is not media or one
    without a video stream raises SourceError (one line) before anything loads the model."""
    path = Path(path)
    producer = producer_factory(load_source_config(_file_source(path)))()
    try:
        if not producer.has_video:
            raise SourceError(f"{path.name}: no video stream (a video file is needed)")
    finally:
        producer.close()


def infer_file(session: OmniSession, path: str | Path, question: str, max_new_tokens: int = 64) -> FileAnswer:
    """Answer `question` about the file at `path`. Raises SourceError (one line) for unusable files."""
    path = Path(path)
    counts, n, seconds, has_audio = TokenCounts(), 0, 0.0, True
    for chunk in read_chunks(_file_source(path), name=path.stem):
        if chunk.frames is None:
            raise SourceError(f"{path.name}: no video stream (a video file is needed)")
        if n == 0 and chunk.audio is None:
            has_audio = False
            log.warning("%s has no audio stream; answering from video only", path.name)
        counts += session.append(chunk).counts
        n, seconds = n + 1, seconds + chunk.duration
    if n == 0:
        raise SourceError(f"{path.name}: no decodable audio or video")
    text = session.ask(question, max_new_tokens=max_new_tokens)
    return FileAnswer(text.strip(), counts, n, seconds, has_audio)
