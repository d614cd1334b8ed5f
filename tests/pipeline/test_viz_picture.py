"""The dashboard's picture of one chunk (`pipeline.viz.frame_picture`), read back from its pixels: kept
cells inside a green border with their own pixels, dropped cells dimmed, one audio bar cell per token."""

from __future__ import annotations

import numpy as np

from pipeline.viz import DIM, DROPPED_BAR, GAP, KEPT, frame_picture


def test_kept_cells_are_outlined_dropped_ones_dimmed_and_audio_tokens_barred():
    frame = np.full((120, 160, 3), 200, np.uint8)
    cells = np.array([[True, False, False, True], [False, True, False, False], [False, False, True, True]])
    audio = np.arange(50) % 3 == 0
    image, layout = frame_picture(frame, cells, audio, width=480)
    px = np.asarray(image)
    cell = layout["cell"]
    assert cell == 120 and layout["tile"] == (480, 360) and px.shape == (360 + GAP + 16, 480, 3)
    for r in range(3):
        for c in range(4):
            block = px[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
            if cells[r, c]:
                assert (block[0] == KEPT).all() and (block[:, -1] == KEPT).all()
                assert (block[1:-1, 1:-1] == 200).all()
            else:
                assert (block == int(200 * DIM)).all()
    x0, by, width, height = layout["bar"]
    for k in range(50):
        x = (2 * k + 1) * width // 100
        assert tuple(px[by + height // 2, x]) == (KEPT if audio[k] else DROPPED_BAR)


def test_without_a_layout_the_picture_is_the_plain_frame_scaled():
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[:, :40] = 255
    image, layout = frame_picture(frame, None, None, width=160)
    px = np.asarray(image)
    assert px.shape == (120, 160, 3) and layout["bar"] is None
    assert (px[:, :78] == 255).all() and (px[:, 82:] == 0).all()
