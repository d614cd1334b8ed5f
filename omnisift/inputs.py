"""Processor inputs for one whole clip, for the compressed thinker's own `generate` (offline use).

    inputs = processor_inputs(model, frames, audio, "What is happening?").to(model.device)
    out = model.thinker.generate(**inputs, use_audio_in_video=True)   # model.thinker.last_stats: counts

Takes arrays, not files: `frames` sampled at 2 fps and 16 kHz mono audio, as `streams/` produces them.
The processor is called with fixed per-frame sizes (no whole-video pixel budget) and without its
30-second audio cap, so long audio is never cut and every frame has the resolution it would have live.
"""

from __future__ import annotations

import numpy as np
from transformers import BatchFeature

from omnisift.loading import DEFAULT_SYSTEM_PROMPT, OmniModel
from streams.chunk import AUDIO_RATE

VIDEO_FPS = 2.0
HOP_LENGTH = 160  # Whisper log-mel hop: 100 feature frames per second


def conversation(question: str, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[dict]:
    """A one-turn chat: system prompt, then the user's video (with its audio) and question."""
    return [
        {"role": "system", "content": [{"type": "text", "text": system_prompt}]},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]},
    ]


def processor_inputs(
    model: OmniModel, frames: np.ndarray, audio: np.ndarray | None, question: str,
    *, system_prompt: str = DEFAULT_SYSTEM_PROMPT, min_pixels: int | None = None, max_pixels: int | None = None,
) -> BatchFeature:
    """Processor outputs for one clip. frames: [T, H, W, 3] uint8 at 2 fps; audio: [S] float32 16 kHz."""
    processor = model.processor
    text = processor.apply_chat_template(conversation(question, system_prompt), add_generation_prompt=True,
                                         tokenize=False)
    videos_kwargs: dict = {"fps": VIDEO_FPS, "do_sample_frames": False, "cap_pixels_per_frame": False}
    # The processor class carries its own default frame size; the saved video processor's wins here.
    size = {"shortest_edge": processor.video_processor.size["shortest_edge"],
            "longest_edge": processor.video_processor.size["longest_edge"]}
    size.update({k: v for k, v in (("shortest_edge", min_pixels), ("longest_edge", max_pixels)) if v})
    videos_kwargs["size"] = size
    kwargs: dict = {"videos_kwargs": videos_kwargs, "return_tensors": "pt"}
    if audio is not None:
        samples = max(len(audio), HOP_LENGTH)
        kwargs.update(
            audio=[audio.astype(np.float32)], load_audio_from_video=True, audio_from_video_indices=[0],
            audio_kwargs={"max_length": -(-samples // HOP_LENGTH) * HOP_LENGTH, "truncation": False,
                          "sampling_rate": AUDIO_RATE},
        )
    inputs = processor(text=text, videos=[frames], **kwargs)
    return inputs
