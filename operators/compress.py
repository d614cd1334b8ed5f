"""Compress: one registry of per-chunk token compressors, each a small stateful object.

Every compressor turns an `EncodedChunk` into a `CompressedChunk` holding the kept tokens with their
original TMRoPE positions (docs/design.md section 2): video token at grid step g, row r, column c sits at
(25 g, r, c) and audio token k at (k, k, k), relative to the stream's first audio-video position.
Ratios count what is dropped per frame (`rho_video`) and per chunk (`rho_audio`), `int(n * rho)` in float
arithmetic as the OmniSIFT release counts (`omnisift.ratios`); `rho_audio = 1` keeps all audio.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from omnisift.ratios import Ratios, audio_kept_count, kept_count
from omnisift.selector import VisionGuidedAudioSelector, select_audio
from omnisift.stvp import check_saliency_dtype, keep_top, spatial_saliency, temporal_saliency
from omnisift.token_layout import AUDIO_TOKENS_PER_CHUNK, GRID_STEPS_PER_CHUNK, POSITIONS_PER_SECOND
from operators.chunks import CompressedChunk, EncodedChunk

COMPRESSORS: dict[str, type[Compressor]] = {}


def register_compressor(name: str) -> Callable[[type], type]:
    """Class decorator adding a compressor to the registry under `name`."""
    def add(cls: type) -> type:
        COMPRESSORS[name] = cls
        cls.name = name
        return cls
    return add


def make_compressor(name: str, ratios: Ratios, selector: VisionGuidedAudioSelector | None = None,
                    **options) -> Compressor:
    """A compressor from the registry. An unknown name, or an option the compressor does not take, is a
    one-line ValueError listing the known names or the compressor's options; a bad option value is the
    constructor's own one-line ValueError."""
    if name not in COMPRESSORS:
        raise ValueError(f"unknown compressor {name!r}; choose one of {', '.join(sorted(COMPRESSORS))}")
    cls = COMPRESSORS[name]
    defaults = cls.option_defaults()
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        accepted = ", ".join(defaults) or "none"
        raise ValueError(f"compressor {name!r} has no option {', '.join(unknown)}; its options: {accepted}")
    for option, value in options.items():
        _check_option_type(name, option, value, defaults[option])
    return cls(ratios=ratios, selector=selector, **options)


def _check_option_type(compressor: str, option: str, value: object, default: object) -> None:
    """An option whose default is a bool, int, float or str takes a value of that type (an int where a
    float is expected), so that `carry_previous_frame: "false"` from a YAML file is refused rather than
    taken as true."""
    expected = type(default) if isinstance(default, (bool, int, float, str)) else None
    if expected is None or value is None:
        return
    accepted = (int, float) if expected is float else expected
    if not isinstance(value, accepted) or isinstance(value, bool) != (expected is bool):  # bool is an int
        raise ValueError(f"compressor {compressor!r} option {option} must be {expected.__name__}, "
                         f"got {type(value).__name__} {value!r}")


def chunk_positions(chunk: EncodedChunk) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Relative TMRoPE positions of every token of a chunk: video [3, G * n_p], audio [3, n_a]."""
    video_pos = audio_pos = None
    device = (chunk.video if chunk.video is not None else chunk.audio).device
    if chunk.video is not None:
        steps, n_p = chunk.video.shape[:2]
        rows, cols = chunk.grid_hw
        g = torch.arange(steps, device=device) + GRID_STEPS_PER_CHUNK * chunk.index
        t = (g * POSITIONS_PER_SECOND).view(-1, 1).expand(steps, n_p)
        r = torch.arange(rows, device=device).view(-1, 1).expand(rows, cols).reshape(1, -1).expand(steps, n_p)
        c = torch.arange(cols, device=device).view(1, -1).expand(rows, cols).reshape(1, -1).expand(steps, n_p)
        video_pos = torch.stack([t.reshape(-1), r.reshape(-1), c.reshape(-1)])
    if chunk.audio is not None:
        k = torch.arange(chunk.audio.shape[0], device=device) + AUDIO_TOKENS_PER_CHUNK * chunk.index
        audio_pos = k.view(1, -1).expand(3, -1)
    return video_pos, audio_pos


class Compressor:
    """Base of the registry: subclasses decide `video_keep` / `audio_keep`; assembly is shared.

    State carried from one chunk to the next (the attributes named in `carried`, cleared by `forget`) is
    read and updated inside `carrying(index)`, which applies it only to the chunk right after."""

    name = "base"
    needs_selector = False  # True when the compressor runs the VGAS selector
    chunk_index: int | None = None  # the chunk `process` is on, for state carried from the chunk before
    previous_index: int | None = None  # the chunk processed last, whose state is carried (None: none)
    carried: tuple[str, ...] = ()  # attributes holding state carried from one chunk to the next

    def __init__(self, ratios: Ratios, selector: VisionGuidedAudioSelector | None = None, **options) -> None:
        if options:
            raise ValueError(f"compressor {self.name!r} takes no option(s) {', '.join(sorted(options))}")
        self.ratios = ratios
        self.selector = selector

    @classmethod
    def option_defaults(cls) -> dict[str, object]:
        """Each keyword option the constructor takes and its default, read from the constructors'
        signatures: a constructor's own keywords (besides `ratios`, `selector`), and, when it has
        `**options`, those of the next class in the MRO it passes them on to (`super().__init__`), up to
        `Compressor`, which takes none. A subclass's default wins over its parent's."""
        defaults: dict[str, object] = {}
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = inspect.signature(init).parameters.values()
            for p in params:
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "ratios", "selector"):
                    defaults.setdefault(p.name, p.default)
            if klass is Compressor or not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return dict(sorted(defaults.items()))

    @classmethod
    def most_kept(cls, tokens_per_frame: int, n_audio: int, ratios: Ratios, options: dict) -> tuple[int, int]:
        """(video tokens of one frame, audio tokens of one chunk) the compressor keeps at most: what a
        context budget must plan for. The ratios' counts, for every compressor that keeps exactly those."""
        video = kept_count(tokens_per_frame, ratios.rho_video)
        return video, audio_kept_count(n_audio, ratios.rho_audio, video)

    def video_keep(self, video: torch.Tensor) -> torch.Tensor:
        """[G, n_p] bool mask of kept video tokens of one chunk's frames [G, n_p, D]."""
        raise NotImplementedError

    def audio_keep(self, audio: torch.Tensor, kept_video: torch.Tensor) -> torch.Tensor:
        """[n_a] bool mask of kept audio tokens, given the chunk's kept video tokens [Kv, D]."""
        raise NotImplementedError

    @torch.inference_mode()
    def process(self, chunk: EncodedChunk) -> CompressedChunk:
        self.chunk_index = chunk.index
        video_pos, audio_pos = chunk_positions(chunk)
        tokens, positions, is_video = [], [], []
        kept_video = None
        if chunk.video is not None:
            mask = self.video_keep(chunk.video).reshape(-1)  # [G * n_p]
            kept_video = chunk.video.reshape(-1, chunk.video.shape[-1])[mask]
            tokens.append(kept_video)
            positions.append(video_pos[:, mask])
            is_video.append(torch.ones(kept_video.shape[0], dtype=torch.bool, device=mask.device))
        if chunk.audio is not None:
            guide = kept_video if kept_video is not None else chunk.audio[:0]
            mask = self.audio_keep(chunk.audio, guide)
            tokens.append(chunk.audio[mask])
            positions.append(audio_pos[:, mask])
            is_video.append(torch.zeros(int(mask.sum()), dtype=torch.bool, device=mask.device))
        last_block = audio_pos if audio_pos is not None else video_pos
        return CompressedChunk(
            index=chunk.index, tokens=torch.cat(tokens), positions=torch.cat(positions, dim=1),
            is_video=torch.cat(is_video),
            video_before=0 if chunk.video is None else chunk.video.shape[0] * chunk.video.shape[1],
            audio_before=0 if chunk.audio is None else chunk.audio.shape[0],
            last_block_end=int(last_block.max()) + 1,
        )

    def follows_previous(self, index: int | None) -> bool:
        """Whether chunk `index` directly follows the chunk processed last (its index is `index - 1`)."""
        return index is not None and self.previous_index is not None and self.previous_index == index - 1

    @contextmanager
    def carrying(self, index: int | None) -> Iterator[None]:
        """Around the work on chunk `index` that reads and updates the carried state. The state applies
        only if the chunk directly follows the chunk processed last; otherwise (a chunk dropped by a live
        source, chunks out of order, a restarted source numbering from 0, the same chunk again, an
        unknown index) it is forgotten first, so the chunk is compressed as a stream's first chunk. The
        same chunk again then puts back the state its first pass left, so the chunk after it is
        compressed as if it had come once. A chunk that fails half-way carries nothing to the next."""
        again = index is not None and index == self.previous_index
        saved = {name: getattr(self, name) for name in self.carried} if again else {}
        if not self.follows_previous(index):
            self.forget()  # assigns new objects, so `saved` is untouched
        try:
            yield
        except BaseException:
            self.forget()
            self.previous_index = None
            raise
        for name, value in saved.items():
            setattr(self, name, value)
        self.previous_index = index

    def forget(self) -> None:
        """Clear the state carried from one chunk to the next (the attributes named in `carried`) by
        assigning new values, never by changing them in place."""

    def reset(self) -> None:
        """Forget state carried between chunks (a new stream starts)."""
        self.forget()
        self.previous_index = None


@register_compressor("full")
class FullCompressor(Compressor):
    """Keeps every token: the uncompressed baseline."""

    @classmethod
    def most_kept(cls, tokens_per_frame: int, n_audio: int, ratios: Ratios, options: dict) -> tuple[int, int]:
        return tokens_per_frame, n_audio

    def video_keep(self, video: torch.Tensor) -> torch.Tensor:
        return torch.ones(video.shape[:2], dtype=torch.bool, device=video.device)

    def audio_keep(self, audio: torch.Tensor, kept_video: torch.Tensor) -> torch.Tensor:
        return torch.ones(audio.shape[0], dtype=torch.bool, device=audio.device)


@register_compressor("random")
class RandomCompressor(Compressor):
    """Keeps a uniformly random subset per frame and per chunk's audio, at the same counts as OmniSIFT
    (except where OmniSIFT has no video to guide its audio and keeps it all: rho_video = 1, or a stream
    with no video in the chunk before).

    Seeded: the same seed and stream give the same choices; `reset()` restarts the sequence.
    """

    def __init__(self, ratios: Ratios, selector=None, seed: int = 0) -> None:
        super().__init__(ratios)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def _random_top(self, rows: int, n: int, keep: int, device: torch.device) -> torch.Tensor:
        scores = torch.rand(rows, n, generator=self.generator).to(device)
        return keep_top(scores, torch.full((rows,), keep, device=device))

    def video_keep(self, video: torch.Tensor) -> torch.Tensor:
        steps, n_p = video.shape[:2]
        return self._random_top(steps, n_p, kept_count(n_p, self.ratios.rho_video), video.device)

    def audio_keep(self, audio: torch.Tensor, kept_video: torch.Tensor) -> torch.Tensor:
        n_a = audio.shape[0]
        return self._random_top(1, n_a, audio_kept_count(n_a, self.ratios.rho_audio), audio.device)[0]

    def reset(self) -> None:
        self.generator.manual_seed(self.seed)


@register_compressor("omnisift")
class OmniSIFTCompressor(Compressor):
    """STVP on the video frames, then VGAS on the audio guided by the kept video tokens, with the public
    release's decisions: `int(n * rho)` dropped, a chunk's audio kept whole when no video token is left or
    `rho_audio = 1` (`omnisift.ratios.audio_kept_count`).

    A chunk without video (audio that outlasts the video, or a gap in it) is, in the release's whole
    sequence, part of the last chunk with video, whose kept video guides it. Here its audio is scored
    against that chunk's kept video tokens, carried (the same scores: an audio token's score depends only
    on itself and the video), and pruned at this chunk's own count, since a live stream cannot wait for
    its end; with no such chunk just before, nothing guides it and it is kept whole.

    `saliency_dtype`: STVP's arithmetic, "float32" (default) or "input" (the release's, in the tokens'
    dtype; see `omnisift.stvp`).

    With `carry_previous_frame=True` the first frame of a chunk is scored by temporal saliency against
    the last frame of the previous chunk (the paper scores it spatially; that is the default). Only the
    chunk just before counts (`Compressor.carrying`): when the chunk processed last is not index - 1 (a
    chunk dropped, chunks out of order, the same chunk again, a chunk without video) or its frame size
    differs, the first frame is scored spatially, as in a stream's first chunk. The same chunk again
    leaves its own state carried, so the chunk after it is compressed as if it had come once.
    """

    needs_selector = True
    carried = ("previous_frame", "guide")

    def __init__(self, ratios: Ratios, selector: VisionGuidedAudioSelector | None = None,
                 carry_previous_frame: bool = False, saliency_dtype: str = "float32") -> None:
        super().__init__(ratios, selector)
        self.carry_previous_frame = carry_previous_frame
        self.saliency_dtype = check_saliency_dtype(saliency_dtype)
        self.has_video = False
        self.forget()

    def forget(self) -> None:
        self.previous_frame: torch.Tensor | None = None  # [n_p, D] last frame of the chunk processed last
        self.guide: torch.Tensor | None = None  # [Kv, D] kept video of the last chunk with video

    @torch.inference_mode()
    def process(self, chunk: EncodedChunk) -> CompressedChunk:
        with self.carrying(chunk.index):  # the state is cleared unless chunk index - 1 came last
            self.has_video = chunk.video is not None
            if not self.has_video:
                self.previous_frame = None  # a first frame after a gap in the video is scored spatially
            return super().process(chunk)

    def video_keep(self, video: torch.Tensor) -> torch.Tensor:
        return self.stvp_mask(video)

    def carried_frame(self, video: torch.Tensor) -> torch.Tensor | None:
        """[n_p, D] frame to score the first of `video`'s frames against, inside `carrying`: the last frame
        of the chunk just before if carrying is on and the frame size is the same."""
        frame = self.previous_frame
        if not self.carry_previous_frame or frame is None:
            return None
        return frame if frame.shape == video.shape[1:] else None

    def stvp_mask(self, video: torch.Tensor) -> torch.Tensor:
        """[G, n_p] bool STVP mask of a chunk's frames [G, n_p, D], inside `carrying`; the chunk's last
        frame is kept for the next chunk."""
        steps, n_p = video.shape[:2]
        carried = self.carried_frame(video)
        if carried is None:
            first = spatial_saliency(video[:1], self.saliency_dtype)  # [1, n_p]
        else:
            first = temporal_saliency(video[:1], carried.unsqueeze(0), self.saliency_dtype)
        rest = temporal_saliency(video[1:], video[:-1], self.saliency_dtype)  # [G - 1, n_p]
        saliency = torch.cat([first.float(), rest.float()])
        self.previous_frame = video[-1]
        keep_n = torch.full((steps,), kept_count(n_p, self.ratios.rho_video), device=video.device)
        return keep_top(saliency, keep_n)

    def audio_keep(self, audio: torch.Tensor, kept_video: torch.Tensor) -> torch.Tensor:
        if self.selector is None:
            raise ValueError("the omnisift compressor needs a VGAS selector (load one with the model)")
        if self.has_video:
            self.guide = kept_video
        n_a = audio.shape[0]
        kept_video_count = 0 if self.guide is None else self.guide.shape[0]
        if audio_kept_count(n_a, self.ratios.rho_audio, kept_video_count) == n_a:
            return torch.ones(n_a, dtype=torch.bool, device=audio.device)
        mask = torch.zeros(n_a, dtype=torch.bool, device=audio.device)
        scores = self.selector(self.guide, audio, logits=True)  # [n_a] logits: no ties from a saturated sigmoid
        mask[select_audio(scores, self.ratios.rho_audio, kept_video=kept_video_count)] = True
        return mask
