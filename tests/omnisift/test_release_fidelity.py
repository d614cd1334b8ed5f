"""OmniSIFT keeps exactly the tokens the public release keeps (fidelity issue, parts 1 and 2).

The expected decisions come from `release_reference.release_keep`, a float64 re-derivation of the
release's rules, on sequences whose positions come from `transformers`' own `get_rope_index`, laid out as
the Qwen2.5-Omni processor lays them out (checked against the processor itself below): several frame
rates, odd frame counts, audio shorter than and outlasting the video, frame sizes where the release's
float count keeps one token more than an exact floor, both ratio extremes, D = 64 and 3584.
"""

from __future__ import annotations

import numpy as np
import omnisift_reference as ref
import pytest
import torch
from release_reference import release_keep

import omnisift
from omnisift.inputs import AUDIO_RATE, HOP_LENGTH, conversation
from omnisift.interleave import interleaved_input_ids, rope_positions_of
from operators.chunks import EncodedChunk
from operators.compress import make_compressor

D = 64


class Clip:
    """One video with its audio as token ids [1, L] and get_rope_index positions [3, 1, L]."""

    def __init__(self, thinker, grid_t: int, rows: int, cols: int, audio_tokens: int, seconds_per_grid: float):
        self.config = thinker.config
        self.grid_t, self.rows, self.cols, self.audio_tokens = grid_t, rows, cols, audio_tokens
        self.input_ids = interleaved_input_ids(self.config, grid_t, rows, cols, audio_tokens, seconds_per_grid)
        self.positions = rope_positions_of(thinker, self.input_ids, grid_t, rows, cols, audio_tokens,
                                           seconds_per_grid)

    def embeddings(self, d: int = D, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(1, self.input_ids.shape[1], d, generator=g).to(dtype)  # [1, L, D]

    def ids(self) -> dict:
        return {"video_token_id": self.config.video_token_id, "audio_token_id": self.config.audio_token_id}


def selector(d: int = D, seed: int = 0) -> omnisift.VisionGuidedAudioSelector:
    """A freshly initialised selector (as a checkpoint-less model has)."""
    torch.manual_seed(seed)
    return omnisift.VisionGuidedAudioSelector(d).eval()


def video_sensitive_selector(d: int = D, seed: int = 0) -> omnisift.VisionGuidedAudioSelector:
    """A selector with every weight random (norms and biases too), so the video it attends to moves the
    audio scores a lot (a freshly initialised one barely looks at the video)."""
    sel = selector(d, seed)
    with torch.no_grad():
        for p in sel.parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.5))
    return sel


def release(clip: Clip, embeds: torch.Tensor, sel, rho_video: float, rho_audio: float, **kw) -> list[bool]:
    scorer = None if sel is None else (lambda video, audio: ref.vgas(sel, video, audio, logits=True))
    return release_keep(embeds[0], clip.input_ids[0], clip.positions[:, 0], scorer=scorer, rho_video=rho_video,
                        rho_audio=rho_audio, **clip.ids(), **kw)


def project(clip: Clip, embeds: torch.Tensor, sel, rho_video: float, rho_audio: float, **kw) -> list[bool]:
    return omnisift.compress_sequence(embeds, clip.input_ids, clip.positions, selector=sel, rho_video=rho_video,
                                      rho_audio=rho_audio, **clip.ids(), **kw)[0].tolist()


# (seconds per grid, frames, extra audio tokens beyond the video's duration): 2, 1, 4, 3 and 0.5 fps; odd
# and even frame counts; audio outlasting the video (> 0) and ending before it (< 0).
LAYOUTS = [(1.0, 7, 37), (1.0, 6, -20), (2.0, 5, 0), (2.0, 6, 60), (0.5, 9, 13), (0.5, 8, -10),
           (2 / 3, 7, 25), (2 / 3, 6, -5), (4.0, 3, 40), (4.0, 4, -30), (1.0, 1, 80), (2.0, 1, -10)]


@pytest.mark.parametrize("rho_video,rho_audio", [(0.7, 0.3), (0.5, 0.5), (0.8, 0.3)])
@pytest.mark.parametrize("seconds_per_grid,frames,extra_audio", LAYOUTS)
def test_compress_sequence_keeps_what_the_release_keeps(tiny, seconds_per_grid, frames, extra_audio,
                                                         rho_video, rho_audio):
    audio_tokens = round(frames * seconds_per_grid * 25) + extra_audio
    clip = Clip(tiny.thinker, frames, 2, 3, audio_tokens, seconds_per_grid)
    embeds, sel = clip.embeddings(seed=frames), video_sensitive_selector()
    assert project(clip, embeds, sel, rho_video, rho_audio) == release(clip, embeds, sel, rho_video, rho_audio)


@pytest.mark.parametrize("seconds_per_grid", [1.0, 2.0])
@pytest.mark.parametrize("rho_video,rho_audio", [(1.0, 0.3), (0.7, 1.0), (1.0, 1.0), (0.0, 0.0)])
def test_ratio_extremes_keep_what_the_release_keeps(tiny, seconds_per_grid, rho_video, rho_audio):
    clip = Clip(tiny.thinker, 5, 2, 3, round(5 * seconds_per_grid * 25) + 30, seconds_per_grid)
    embeds, sel = clip.embeddings(seed=3), video_sensitive_selector()
    assert project(clip, embeds, sel, rho_video, rho_audio) == release(clip, embeds, sel, rho_video, rho_audio)


@pytest.mark.parametrize("rho_video", [1.0, 0.7])
def test_audio_stays_whole_at_rho_audio_one_and_when_no_video_is_left(tiny, rho_video):
    clip = Clip(tiny.thinker, 4, 2, 3, 120, 1.0)
    embeds = clip.embeddings(seed=4)
    keep = torch.tensor(project(clip, embeds, selector(), rho_video, 1.0 if rho_video < 1 else 0.3))
    assert keep[clip.input_ids[0] == clip.config.audio_token_id].all()


def test_at_two_seconds_per_grid_a_pair_of_frames_shares_one_chunk_and_its_audio(tiny):
    # 5 frames of 6 tokens at t = 0, 50, 100, 150, 200 and 20 audio tokens: the release pairs frames 0 and 1
    # (frame 1 scored temporally) and gives them all the audio; fixed 50-position windows would score
    # every frame spatially and give all the audio to frame 0 alone.
    clip = Clip(tiny.thinker, 5, 2, 3, 20, 2.0)
    embeds = clip.embeddings(seed=5)
    keep = project(clip, embeds, None, 0.5, 0.3)
    video = (clip.input_ids[0] == clip.config.video_token_id).nonzero().squeeze(-1)
    frame1 = embeds[0, video[6:12]]
    expected = ref.top_sorted(ref.temporal_saliency(embeds[0, video[:6]].double().numpy(),
                                                    frame1.double().numpy()), 3)
    assert [j for j in range(6) if keep[int(video[6 + j])]] == expected


# n * 0.7 falls just short of an integer in floats for these sizes: the release keeps one token more.
@pytest.mark.parametrize("rows,cols", [(9, 10), (10, 17), (12, 15), (15, 22), (18, 20), (25, 26), (10, 73)])
def test_count_rule_sizes_keep_what_the_release_keeps(tiny, rows, cols):
    n_p = rows * cols
    clip = Clip(tiny.thinker, 3, rows, cols, 90, 1.0)
    embeds, sel = clip.embeddings(seed=n_p), video_sensitive_selector()
    keep = project(clip, embeds, sel, 0.7, 0.3)
    assert keep == release(clip, embeds, sel, 0.7, 0.3)
    video_kept = torch.tensor(keep)[clip.input_ids[0] == clip.config.video_token_id]
    assert int(video_kept.sum()) == 3 * (n_p - 7 * n_p // 10 + 1)  # one more than the exact floor, per frame


@pytest.mark.parametrize("seconds_per_grid,frames,audio_tokens", [(1.0, 3, 90), (2.0, 3, 160)])
def test_model_width_keeps_what_the_release_keeps(tiny, seconds_per_grid, frames, audio_tokens):
    clip = Clip(tiny.thinker, frames, 9, 10, audio_tokens, seconds_per_grid)
    embeds, sel = clip.embeddings(d=3584, seed=6), video_sensitive_selector(3584)
    assert project(clip, embeds, sel, 0.7, 0.3) == release(clip, embeds, sel, 0.7, 0.3)


def two_video_row(thinker) -> tuple[torch.Tensor, torch.Tensor]:
    """One row holding two videos with their audio: 3 frames of 2 x 3 tokens, then 2 frames of 3 x 4."""
    cfg = thinker.config
    first = interleaved_input_ids(cfg, 3, 2, 3, 75, suffix_text=2)
    second = interleaved_input_ids(cfg, 2, 3, 4, 50, prefix_text=0)
    input_ids = torch.cat([first, second], dim=1)
    positions, _ = thinker.get_rope_index(
        input_ids, None, torch.tensor([[3, 4, 6], [2, 6, 8]]), torch.ones_like(input_ids),
        use_audio_in_video=True, audio_seqlens=torch.tensor([300, 200]), second_per_grids=torch.tensor([1.0, 1.0]),
    )
    return input_ids, positions


def test_frames_of_different_sizes_in_a_pair_keep_the_second_whole_as_the_release_does(tiny):
    # The row's time values pair across the two videos: the first video's third frame (6 tokens) pairs
    # with the second video's first frame (12 tokens), which has no grid position to compare with.
    input_ids, positions = two_video_row(tiny.thinker)
    cfg = tiny.thinker.config
    clip = Clip.__new__(Clip)
    clip.config, clip.input_ids, clip.positions = cfg, input_ids, positions
    embeds, sel = clip.embeddings(seed=7), video_sensitive_selector()
    keep = project(clip, embeds, sel, 0.7, 0.3)
    assert keep == release(clip, embeds, sel, 0.7, 0.3)
    video = (input_ids[0] == cfg.video_token_id).nonzero().squeeze(-1)
    assert all(keep[int(i)] for i in video[18:30])  # the second video's first frame, kept whole
    assert sum(keep[int(i)] for i in video[12:18]) == 6 - int(6 * 0.7)


def test_separate_audio_before_the_first_frame_stays_and_after_the_video_joins_the_last_pair(tiny):
    # The release's chunks own audio by time: nothing owns audio before the row's first frame (kept whole,
    # this project's reading of the rules), and the last pair takes all later audio, a separate clip too.
    cfg = tiny.thinker.config
    def separate_audio(n: int) -> list[int]:
        return [cfg.audio_start_token_id] + [cfg.audio_token_id] * n + [cfg.audio_end_token_id]
    video = interleaved_input_ids(cfg, 4, 2, 3, 100, prefix_text=2, suffix_text=2)[0].tolist()
    input_ids = torch.tensor([[100] * 3 + separate_audio(30) + video + separate_audio(40) + [100] * 2])
    positions, _ = tiny.thinker.get_rope_index(
        input_ids, None, torch.tensor([[4, 4, 6]]), torch.ones_like(input_ids), use_audio_in_video=True,
        audio_seqlens=torch.tensor([120, 400, 160]), second_per_grids=torch.tensor([1.0]))
    clip = Clip.__new__(Clip)
    clip.config, clip.input_ids, clip.positions = cfg, input_ids, positions
    embeds, sel = clip.embeddings(seed=11), video_sensitive_selector()
    keep = project(clip, embeds, sel, 0.7, 0.3)
    assert keep == release(clip, embeds, sel, 0.7, 0.3)
    audio = (input_ids[0] == cfg.audio_token_id).nonzero().squeeze(-1).tolist()
    assert all(keep[i] for i in audio[:30])
    last_pair_audio = audio[30 + 50:]  # the second pair's 50 in-video tokens, then the 40 after the video
    assert sum(keep[i] for i in last_pair_audio) == 90 - int(90 * 0.3)


@pytest.mark.parametrize("fps", [2.0, 1.0, 4.0])
def test_the_test_layout_is_the_processors(tiny, fps):
    """`interleaved_input_ids` lays out ids exactly as the Qwen2.5-Omni processor does at this frame rate."""
    seconds, height, width = 6, 56, 84  # -> 2 x 3 merged tokens a frame
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(int(seconds * fps), height, width, 3), dtype=np.uint8)
    audio = rng.standard_normal(int((seconds + 1.5) * AUDIO_RATE)).astype(np.float32)  # outlasts the video
    processor = tiny.processor
    text = processor.apply_chat_template(conversation("Q?"), add_generation_prompt=True, tokenize=False)
    size = {k: processor.video_processor.size[k] for k in ("shortest_edge", "longest_edge")}  # the saved one
    out = processor(text=text, videos=[frames], audio=[audio], load_audio_from_video=True,
                    audio_from_video_indices=[0], return_tensors="pt",
                    videos_kwargs={"fps": fps, "do_sample_frames": False, "cap_pixels_per_frame": False,
                                   "size": size},
                    audio_kwargs={"max_length": -(-len(audio) // HOP_LENGTH) * HOP_LENGTH, "truncation": False,
                                  "sampling_rate": AUDIO_RATE})
    ids = out["input_ids"][0]
    cfg = tiny.thinker.config
    grid_t, h, w = out["video_grid_thw"][0].tolist()
    assert (h // 2, w // 2) == (2, 3)
    audio_tokens = int((ids == cfg.audio_token_id).sum())
    built = interleaved_input_ids(cfg, grid_t, 2, 3, audio_tokens, float(out["video_second_per_grid"][0]),
                                  prefix_text=0, suffix_text=0)[0]
    start = int((ids == cfg.vision_start_token_id).nonzero()[0])
    assert ids[start:start + len(built)].tolist() == built.tolist()


def stream_chunks(clip: Clip, embeds: torch.Tensor) -> list[EncodedChunk]:
    """The clip's tokens as the live path delivers them at 2 fps: 2 frames and 50 audio tokens a chunk."""
    ids = clip.input_ids[0]
    n_p = clip.rows * clip.cols
    video = embeds[0, ids == clip.config.video_token_id].view(clip.grid_t, n_p, -1)
    audio = embeds[0, ids == clip.config.audio_token_id]
    n_chunks = max(-(-clip.grid_t // 2), -(-clip.audio_tokens // 50))
    return [EncodedChunk(k, video[2 * k:2 * k + 2] if 2 * k < clip.grid_t else None,
                         audio[50 * k:50 * k + 50] if 50 * k < clip.audio_tokens else None, (clip.rows, clip.cols))
            for k in range(n_chunks)]


def kept_by_stream(clip: Clip, embeds: torch.Tensor, sel, rho_video: float, rho_audio: float, **options):
    comp = make_compressor("omnisift", omnisift.Ratios(rho_video, rho_audio), sel, **options)
    return [comp.process(c) for c in stream_chunks(clip, embeds)]


def kept_tokens(embeds: torch.Tensor, keep: list[bool], mask: torch.Tensor) -> torch.Tensor:
    return embeds[0][torch.tensor(keep) & mask]


@pytest.mark.parametrize("rows,cols,frames,audio", [(9, 10, 4, 100), (12, 15, 5, 125), (2, 3, 6, 130)])
@pytest.mark.parametrize("rho_video,rho_audio", [(0.7, 0.3), (1.0, 0.3), (0.7, 1.0)])
def test_streaming_compressor_keeps_what_the_release_keeps(tiny, rows, cols, frames, audio, rho_video, rho_audio):
    clip = Clip(tiny.thinker, frames, rows, cols, audio, 1.0)
    embeds, sel = clip.embeddings(seed=rows), video_sensitive_selector()
    expected = release(clip, embeds, sel, rho_video, rho_audio)
    outs = kept_by_stream(clip, embeds, sel, rho_video, rho_audio)
    ids = clip.input_ids[0]
    video_mask, audio_mask = ids == clip.config.video_token_id, ids == clip.config.audio_token_id
    torch.testing.assert_close(torch.cat([o.tokens[o.is_video] for o in outs]),
                               kept_tokens(embeds, expected, video_mask), rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([o.tokens[~o.is_video] for o in outs]),
                               kept_tokens(embeds, expected, audio_mask), rtol=0, atol=0)


def test_streaming_audio_past_the_last_frame_is_scored_against_the_last_kept_video(tiny):
    # 3 frames (2 chunks with video), 150 audio tokens: chunk 2 has audio only. The release scores it
    # with chunk 1's kept video; live, it is pruned at its own count (it cannot wait for the end).
    clip = Clip(tiny.thinker, 3, 2, 3, 150, 1.0)
    embeds, sel = clip.embeddings(seed=8), video_sensitive_selector()
    outs = kept_by_stream(clip, embeds, sel, 0.7, 0.7)
    chunks = stream_chunks(clip, embeds)
    last_frame = chunks[1].video[0]
    kept_last = last_frame[ref.stvp(last_frame, None, 0.7)[0]]  # chunk 1 holds one frame
    expected = ref.select_audio(ref.vgas(sel, kept_last, chunks[2].audio, logits=True), 0.7)
    unguided = ref.select_audio(ref.vgas(sel, kept_last[:0], chunks[2].audio, logits=True), 0.7)
    assert expected != unguided  # the guide decides here
    torch.testing.assert_close(outs[2].tokens, chunks[2].audio[expected], rtol=0, atol=0)


def test_streaming_audio_with_no_video_before_it_stays_whole(tiny):
    chunk = EncodedChunk(0, None, torch.randn(50, D, generator=torch.Generator().manual_seed(9)), (2, 3))
    out = make_compressor("omnisift", omnisift.Ratios(0.7, 0.3), selector()).process(chunk)
    assert out.audio_after == 50


def bf16_clip(tiny) -> tuple[Clip, torch.Tensor]:
    """Tokens near a shared direction, so saliencies crowd together and bf16 rounding reorders them."""
    clip = Clip(tiny.thinker, 6, 12, 12, 150, 1.0)
    g = torch.Generator().manual_seed(10)
    base = torch.randn(1, 1, D, generator=g)
    embeds = (base + 0.3 * torch.randn(1, clip.input_ids.shape[1], D, generator=g)).bfloat16()
    return clip, embeds


def test_input_dtype_saliency_reproduces_the_release_bf16_arithmetic(tiny):
    clip, embeds = bf16_clip(tiny)
    sel = selector()
    keep = project(clip, embeds, sel, 0.7, 0.3, saliency_dtype="input")
    assert keep == release(clip, embeds, sel, 0.7, 0.3, saliency="bfloat16")


def test_float32_saliency_follows_the_exact_values_where_bf16_reorders(tiny):
    clip, embeds = bf16_clip(tiny)
    sel = selector()
    keep = project(clip, embeds, sel, 0.7, 0.3)
    assert keep == release(clip, embeds, sel, 0.7, 0.3)  # float64 saliency of the same bf16 tokens
    assert keep != release(clip, embeds, sel, 0.7, 0.3, saliency="bfloat16")


def test_streaming_input_dtype_saliency_reproduces_the_release_bf16_arithmetic(tiny):
    clip, embeds = bf16_clip(tiny)
    sel = selector()
    expected = release(clip, embeds, sel, 0.7, 0.3, saliency="bfloat16")
    outs = kept_by_stream(clip, embeds, sel, 0.7, 0.3, saliency_dtype="input")
    video_mask = clip.input_ids[0] == clip.config.video_token_id
    torch.testing.assert_close(torch.cat([o.tokens[o.is_video] for o in outs]),
                               kept_tokens(embeds, expected, video_mask), rtol=0, atol=0)


def test_an_unknown_saliency_dtype_is_one_line_naming_the_choices(tiny):
    clip = Clip(tiny.thinker, 2, 2, 3, 50, 1.0)
    with pytest.raises(ValueError, match="saliency_dtype must be one of float32, input, got 'bf16'"):
        project(clip, clip.embeddings(), None, 0.7, 0.3, saliency_dtype="bf16")
