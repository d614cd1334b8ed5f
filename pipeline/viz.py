"""Pictures of what each compressor kept (`omnisift viz VIDEO`).

One row per method: the frames of a few chunks (one picture per visual frame, i.e. the first of the
two frames of each 1-second temporal patch) at the model's resized aspect, each merged token a
`CELL`-pixel cell; kept cells keep their pixels and get a one-pixel border in `KEPT` (pure green),
dropped cells are dimmed. Under the frames, the chunks' waveform and one bar cell per audio token
(40 ms): `KEPT` when kept, light grey when dropped. `render` returns the layout it drew, so tests can
check the overlay from pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from omnisift.ratios import RHO_VIDEO_25
from omnisift.token_layout import AUDIO_TOKENS_PER_CHUNK, GRID_STEPS_PER_CHUNK, POSITIONS_PER_SECOND
from operators.chunks import CompressedChunk

CELL = 12
GAP = 4
LABEL = 80
WAVE_H, BAR_H = 28, 8
KEPT = (0, 255, 0)
DROPPED_BAR = (200, 200, 200)
DIM = 0.3


@dataclass(frozen=True)
class Tile:
    """Where one frame of one method was drawn."""

    method: str
    chunk: int
    step: int
    x: int
    y: int


def kept_cells(compressed: CompressedChunk, steps: int, rows: int, cols: int) -> np.ndarray:
    """[steps, rows, cols] bool of kept video tokens, read from the kept tokens' TMRoPE positions."""
    grid = np.zeros((steps, rows, cols), dtype=bool)
    pos = compressed.positions[:, compressed.is_video].cpu().numpy()  # [3, Kv]: (25 g, r, c)
    for t, r, c in pos.T:
        grid[t // POSITIONS_PER_SECOND - GRID_STEPS_PER_CHUNK * compressed.index, r, c] = True
    return grid


def kept_audio(compressed: CompressedChunk, n_audio: int) -> np.ndarray:
    """[n_audio] bool of kept audio tokens of the chunk (position k counts from the stream start)."""
    mask = np.zeros(n_audio, dtype=bool)
    mask[compressed.positions[0, ~compressed.is_video].cpu().numpy() - AUDIO_TOKENS_PER_CHUNK * compressed.index] = True
    return mask


def render(frames: list[np.ndarray], audio: list[np.ndarray], kept: dict[str, list[CompressedChunk]],
           grid_hw: tuple[int, int], n_audio: int = AUDIO_TOKENS_PER_CHUNK) -> tuple[Image.Image, dict]:
    """Draw every method's choices. frames: per chunk [F, H, W, 3] uint8 at 2 fps; audio: per chunk [S]."""
    rows, cols = grid_hw
    steps = max(1, (len(frames[0]) + 1) // 2)
    tile_w, tile_h = cols * CELL, rows * CELL
    strip_w = len(frames) * steps * (tile_w + GAP) - GAP
    tokens = len(frames) * n_audio
    row_h = tile_h + GAP + WAVE_H + BAR_H + 3 * GAP
    canvas = np.full((len(kept) * row_h + GAP, LABEL + strip_w + GAP, 3), 255, dtype=np.uint8)
    layout: dict = {"tiles": [], "bars": {}, "cell": CELL, "grid": grid_hw, "steps": steps, "tokens": tokens,
                    "kept": kept}
    wave = np.concatenate(audio) if audio else np.zeros(1, np.float32)
    for m, (method, chunks) in enumerate(kept.items()):
        y0 = GAP + m * row_h
        x = LABEL
        for c, comp in enumerate(chunks):
            cells = kept_cells(comp, steps, rows, cols)
            for s in range(steps):
                frame = frames[c][min(2 * s, len(frames[c]) - 1)]
                canvas[y0:y0 + tile_h, x:x + tile_w] = marked_tile(frame, cells[s], CELL)
                layout["tiles"].append(Tile(method, c, s, x, y0))
                x += tile_w + GAP
        wy = y0 + tile_h + GAP
        _waveform(canvas[wy:wy + WAVE_H, LABEL:LABEL + strip_w], wave)
        by = wy + WAVE_H + GAP
        mask = np.concatenate([kept_audio(comp, n_audio) for comp in chunks])
        for k in range(tokens):
            x0, x1 = LABEL + k * strip_w // tokens, LABEL + (k + 1) * strip_w // tokens
            canvas[by:by + BAR_H, x0:x1] = KEPT if mask[k] else DROPPED_BAR
        layout["bars"][method] = (LABEL, by, strip_w, BAR_H, mask)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for m, method in enumerate(kept):
        draw.text((4, GAP + m * row_h + 4), method, fill=(0, 0, 0))
    return image, layout


def marked_tile(frame: np.ndarray, cells: np.ndarray, cell: int = CELL) -> np.ndarray:
    """One frame [H, W, 3] uint8 resized to `cell`-pixel cells of the token grid `cells` [rows, cols] bool:
    kept cells keep their pixels inside a one-pixel `KEPT` border, dropped cells are dimmed."""
    rows, cols = cells.shape
    tile = np.asarray(Image.fromarray(frame).convert("RGB").resize((cols * cell, rows * cell), Image.BILINEAR)).copy()
    for r in range(rows):
        for q in range(cols):
            block = tile[r * cell:(r + 1) * cell, q * cell:(q + 1) * cell]
            if cells[r, q]:
                block[0, :] = block[-1, :] = KEPT
                block[:, 0] = block[:, -1] = KEPT
            else:
                block[:] = (block * DIM).astype(np.uint8)
    return tile


def frame_picture(frame: np.ndarray, cells: np.ndarray | None, audio: np.ndarray | None,
                  width: int = 480) -> tuple[Image.Image, dict]:
    """The dashboard's picture of a stream's newest chunk: its first frame [H, W, 3] with the kept cells
    drawn as `render` draws them (`cells` [rows, cols] bool; None: the plain frame), and under it one bar
    cell per audio token, `KEPT` when kept (`audio` [n_audio] bool). Returns the image and its layout
    (`cell`, the tile's size, the bar's box) so a test can read the overlay back from pixels."""
    if cells is not None:
        cell = max(CELL, width // max(1, cells.shape[1]))
        tile = marked_tile(frame, cells, cell)
    else:
        cell = 0
        h, w = frame.shape[:2]
        tile = np.asarray(Image.fromarray(frame).convert("RGB").resize((width, max(1, h * width // w))))
    th, tw = tile.shape[:2]
    bar_h = 0 if audio is None else 2 * BAR_H
    canvas = np.full((th + (GAP + bar_h if bar_h else 0), tw, 3), 255, dtype=np.uint8)
    canvas[:th] = tile
    bar = None
    if audio is not None and audio.size:
        by = th + GAP
        for k in range(audio.size):
            x0, x1 = k * tw // audio.size, (k + 1) * tw // audio.size
            canvas[by:by + bar_h, x0:max(x0 + 1, x1 - 1)] = KEPT if audio[k] else DROPPED_BAR
        bar = (0, by, tw, bar_h)
    return Image.fromarray(canvas), {"cell": cell, "tile": (tw, th), "bar": bar}


def _waveform(area: np.ndarray, samples: np.ndarray) -> None:
    """Min/max waveform of `samples` in dark grey over `area` [h, w, 3] (in place)."""
    h, w = area.shape[:2]
    peak = float(np.abs(samples).max()) or 1.0
    for x, part in enumerate(np.array_split(samples, w)):
        if part.size == 0:
            continue
        lo = int((1 - part.max() / peak) * (h - 1) / 2)
        hi = int((1 - part.min() / peak) * (h - 1) / 2)
        area[lo:hi + 1, x] = (90, 90, 90)


def visualize(video: str, methods: list[str], model: str, n_chunks: int = 3, rho_video: float = RHO_VIDEO_25,
              rho_audio: float = 0.3, max_pixels: int | None = None, **session_options) -> tuple[Image.Image, dict]:
    """Run each method live over the first `n_chunks` chunks of `video` and draw what it kept."""
    from itertools import islice

    from pipeline.session import OmniSession
    from streams import read_chunks
    from streams.errors import SourceError

    chunks = list(islice(read_chunks({"type": "file", "path": str(video), "realtime": False}), n_chunks))
    if not chunks or chunks[0].frames is None:
        raise SourceError(f"{video}: no video stream (a video file is needed)")
    from omnisift.loading import load_model
    from operators import COMPRESSORS

    loaded = load_model(model, compress=any(COMPRESSORS[m].needs_selector for m in methods), **session_options)
    kept, grid_hw = {}, None
    for name in methods:  # one model, shared by every method's session
        session = OmniSession.from_model(loaded, compressor=name, rho_video=rho_video, rho_audio=rho_audio,
                                         max_pixels=max_pixels)
        kept[name] = [session.append(chunk) for chunk in chunks]
        if grid_hw is None:
            pre = session.preprocessor.process(0, chunks[0].frames, None)
            merge = session.model.thinker.config.vision_config.spatial_merge_size
            grid_hw = (pre.grid_thw[1] // merge, pre.grid_thw[2] // merge)
    audio = [c.audio if c.audio is not None else np.zeros(32000, np.float32) for c in chunks]
    n_audio = max((k.audio_before for k in kept[methods[0]]), default=0) or AUDIO_TOKENS_PER_CHUNK
    return render([c.frames for c in chunks], audio, kept, grid_hw, n_audio)
