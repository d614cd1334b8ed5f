"""OmniSIFT: modality-asymmetric token compression for omni-modal LLMs (arXiv 2602.04804).

The method as a library, with no knowledge of Ray or of live streams:

- `stvp(frame1, frame2, rho_video)`: spatio-temporal video pruning of one chunk's two frames.
- `VisionGuidedAudioSelector`: VGAS, the learned audio scorer guided by the kept video tokens.
- `select_audio(scores, rho_audio)`: the kept audio tokens (straight-through mask for training).
- `load_selector` / `save_selector`: safetensors checkpoints in the OmniSIFT-7B key layout.
- `compress_sequence(...)`: the same decisions over whole offline Qwen2.5-Omni sequences.
- `load_model(...)`: a Qwen2.5-Omni thinker with OmniSIFT applied inside its forward.
- `TokenCounts`: audio and video tokens before and after compression, and the kept fraction.
"""

from omnisift.checkpoint import CheckpointError, load_selector, save_selector
from omnisift.counts import TokenCounts
from omnisift.ratios import Ratios, kept_count, ratios_for_retention
from omnisift.selector import VisionGuidedAudioSelector, select_audio
from omnisift.sequence import compress_sequence, decide_sequence
from omnisift.stvp import stvp

__all__ = [
    "CheckpointError", "Ratios", "TokenCounts", "VisionGuidedAudioSelector", "compress_sequence",
    "decide_sequence", "kept_count", "load_model", "load_selector", "ratios_for_retention", "save_selector",
    "select_audio", "stvp",
]


def __getattr__(name: str):
    # `load_model` pulls in transformers; import it only when asked for.
    if name == "load_model":
        from omnisift.loading import load_model

        return load_model
    raise AttributeError(f"module 'omnisift' has no attribute {name!r}")
