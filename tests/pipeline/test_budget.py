"""The context budget (`pipeline.session.budget`) against numbers worked out by hand in each test: tokens per
frame as the processor resizes, tokens a chunk keeps under each compressor, the worst case of a window, and
the refusal's numbers."""

from __future__ import annotations

import pytest

from operators import Compression
from pipeline.session.budget import ContextBudget, frame_tokens, kept_per_chunk, window_chunks

MAX_7B = 12_845_056  # the released processor's max_pixels
VGA_CAP = 640 * 480


@pytest.mark.parametrize(("max_pixels", "size", "tokens"), [
    # 480 -> 17 x 28 = 476 rows, 640 -> 23 x 28 = 644 columns (rounded to the nearest multiple of 28);
    # 476 x 644 = 306,544 pixels <= 307,200: 17 x 23 tokens
    (VGA_CAP, (640, 480), 391),
    # 1080 -> 39 x 28 = 1092, 1920 -> 69 x 28 = 1932; 2,109,744 pixels, far under the 7B's bound: 39 x 69
    (MAX_7B, (1920, 1080), 2691),
    # no frame size: the bound itself, 307,200 // 784 = 391 (391.8 rounded down)
    (VGA_CAP, None, 391),
    # 1080p under the VGA cap: scaled down by sqrt(2,073,600 / 307,200) = 2.598 -> 415.7 x 739.0, floored to
    # multiples of 28: 392 x 728 = 285,376 pixels: 14 x 26 tokens
    (VGA_CAP, (1920, 1080), 364),
])
def test_tokens_of_a_frame(max_pixels, size, tokens):
    assert frame_tokens(max_pixels, None, size) == tokens


@pytest.mark.parametrize(("compression", "tokens_per_frame", "has_audio", "kept"), [
    # the release's ratios: 391 - floor(391 x 0.7) = 391 - 273 = 118 per frame, 2 frames; 50 - floor(15) = 35
    (Compression.of("omnisift", rho_video=0.7, rho_audio=0.3), 391, True, 2 * 118 + 35),
    # 25%: 391 - floor(312.8) = 79 per frame; the audio as above
    (Compression.of("omnisift", rho_video=0.8, rho_audio=0.3), 391, True, 2 * 79 + 35),
    # a stream without audio keeps video only
    (Compression.of("omnisift", rho_video=0.8, rho_audio=0.3), 391, False, 2 * 79),
    # all tokens: 2 frames of 391 and 50 audio tokens
    (Compression.of("full"), 391, True, 2 * 391 + 50),
])
def test_tokens_a_chunk_keeps_at_most(compression, tokens_per_frame, has_audio, kept):
    assert kept_per_chunk(compression, tokens_per_frame, has_audio) == kept


def test_a_window_holds_its_seconds_in_two_second_chunks_rounded_up():
    assert (window_chunks(120.0), window_chunks(121.0), window_chunks(2.0), window_chunks(None)) == (60, 61, 1, None)


def test_the_worst_case_and_the_refusal_name_the_numbers():
    # 150 chunks of 271 kept tokens = 40,650, + 60 prompt + 592 question = 41,302 > 32,768
    budget = ContextBudget(max_context=32_768, prefix=60, question=592, tokens_per_frame=391, kept_per_chunk=271,
                           window_chunks=150)
    assert budget.worst_case == 41_302 and budget.window_tokens == 32_768 - 60 - 592
    with pytest.raises(ValueError) as e:
        budget.check("stream 'door'")
    # what fits: (32,768 - 652) // 271 = 118 chunks = 236 seconds
    assert str(e.value) == ("stream 'door': context budget of 41302 tokens (150 chunks x 271 kept tokens at 391 per "
                            "frame + 60 prompt + 592 question) is more than the model's 32768; lower window_seconds "
                            "to 236 or less, or max_pixels, or retention")
    fits = ContextBudget(32_768, 60, 592, 391, 271, 118)  # 118 x 271 + 652 = 32,630
    assert fits.worst_case == 32_630
    fits.check("stream 'door'")
    ContextBudget(32_768, 60, 592, 391, 271, None).check()  # no window in seconds: the token window bounds it
