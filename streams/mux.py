"""Writing a stream's audio into a container: the one way the project encodes 16 kHz mono float audio
(AAC) into an MP4 (alert clips, the synthetic world's files, the synthetic task's clips, test media)."""

from __future__ import annotations

import av
import numpy as np

from .chunk import AUDIO_RATE


def mux_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
              samples: np.ndarray) -> None:
    """Encode `samples` ([n] float32 at AUDIO_RATE) through `stream` into `container`, then flush it."""
    step = stream.codec_context.frame_size or 1024
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    for start in range(0, len(samples), step):
        frame = av.AudioFrame.from_ndarray(samples[None, start:start + step], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
