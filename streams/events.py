"""What producers hand to the Chunker: timestamped media samples and control events.

Producers (file/RTSP/synthetic decoders, the ffmpeg device reader, the ZeroMQ receiver, or a test's fake)
yield these; the single `Chunker` turns them into `AVChunk`s. Times are seconds on the producer's own clock;
`wall` is `time.time()` when the data was captured or received.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class VideoSample:
    """One decoded frame. `image` is an RGB uint8 [H, W, 3] array or a callable producing one, so a decoder
    can defer colour conversion until the Chunker actually samples the frame (most 25/30 fps frames never are)."""

    t: float
    image: np.ndarray | Callable[[], np.ndarray]
    wall: float = field(default_factory=time.time)

    def array(self) -> np.ndarray:
        if callable(self.image):
            self.image = self.image()
        return self.image


@dataclass(frozen=True, eq=False)
class AudioSample:
    """Mono float32 samples at 16 kHz starting at time `t`."""

    t: float
    samples: np.ndarray
    wall: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Discontinuity:
    """The producer's clock restarts after this event (reconnect, loop).

    gap=True: data was lost (reconnect); the Chunker closes the current chunk, flags the next one `gap_before`
    and starts the new segment on a chunk boundary, `wall_gap` seconds (rounded down to whole chunks) later.
    gap=False: seamless continuation (a looping file); media time continues where it was.
    """

    gap: bool = True
    wall_gap: float = 0.0
    reason: str = ""


Event = VideoSample | AudioSample | Discontinuity
