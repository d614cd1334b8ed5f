"""From what a user asks for to a stream's compressor, one way for every caller.

A `Compression` is a compressor name from the registry, its options, and either a retention target
(over audio + video tokens) or drop ratios. `Compression.of(...)` checks all of it at once, in one line
each (an unknown compressor or option, a bad option value, retention given with ratios), so a bad
setting fails when a session or actor starts, not at the first chunk. The compressor itself is made per
stream once the frame size is known, since a retention target depends on it (`make`, `chunk_encoder`).
The live session, the encoder actor, evaluation and the compressor comparison all come through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omnisift.ratios import Ratios, ratios_for_retention, resolve_ratios
from omnisift.token_layout import AUDIO_TOKENS_PER_CHUNK, GRID_STEPS_PER_CHUNK
from operators.chunk_encoder import ChunkEncoder
from operators.compress import COMPRESSORS, Compressor, make_compressor
from operators.encode import Encoder
from operators.preprocess import Preprocessor


@dataclass(frozen=True)
class Compression:
    """A compressor name, its options, and a retention target or drop ratios (checked by `of`)."""

    compressor: str = "omnisift"
    retention: float | None = None
    ratios: Ratios = field(default_factory=Ratios)
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, compressor: str = "omnisift", retention: float | None = None, rho_video: float | None = None,
           rho_audio: float | None = None, options: Mapping[str, Any] | None = None) -> Compression:
        """Check and hold a compression setting; one-line ValueErrors for anything wrong in it."""
        ratios = resolve_ratios(retention, rho_video, rho_audio)
        # Building the compressor once checks the name and every option (names against its constructors,
        # then the constructor's checks of the values); it is thrown away.
        make_compressor(compressor, ratios, None, **dict(options or {}))
        return cls(compressor, retention, ratios, dict(options or {}))

    @property
    def needs_selector(self) -> bool:
        """Whether the compressor runs the VGAS selector (the model must carry one)."""
        return COMPRESSORS[self.compressor].needs_selector

    def ratios_for(self, tokens_per_frame: int, *, has_audio: bool = True) -> Ratios:
        """The drop ratios for frames of `tokens_per_frame` tokens (0: no video): the given ratios, or
        those that keep about `retention` of what the stream has (audio, video, or both)."""
        if self.retention is None:
            return self.ratios
        return ratios_for_retention(self.retention, tokens_per_frame, GRID_STEPS_PER_CHUNK,
                                    AUDIO_TOKENS_PER_CHUNK if has_audio else 0, rho_audio=self.ratios.rho_audio)

    def make(self, tokens_per_frame: int, selector: Any = None, *, has_audio: bool = True) -> Compressor:
        """A fresh compressor for one stream whose frames have `tokens_per_frame` tokens."""
        return make_compressor(self.compressor, self.ratios_for(tokens_per_frame, has_audio=has_audio), selector,
                               **self.options)

    def chunk_encoder(self, model: Any, min_pixels: int | None = None, max_pixels: int | None = None) -> ChunkEncoder:
        """The whole per-chunk path (preprocess, towers, this compression) of one stream over a loaded
        `omnisift.loading.OmniModel` (its towers, processor, selector and device)."""
        preprocessor = Preprocessor(model.processor.video_processor, model.device, min_pixels, max_pixels)
        return ChunkEncoder(preprocessor, Encoder(model.thinker),
                            lambda n_p, has_audio: self.make(n_p, model.thinker.compressor, has_audio=has_audio))
