"""Each baseline against an independent computation of its rule on small inputs (numpy, loops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omnisift.ratios import Ratios
from omnisift.selector import VisionGuidedAudioSelector, select_audio
from operators.baselines.omnizip import density_peak_scores, select_and_merge_audio
from operators.chunks import EncodedChunk
from operators.compress import make_compressor
from tests.baselines.conftest import D


def kept(n: int, rho: float) -> int:
    """The release's count: int(n * rho) dropped, in Python floats."""
    return n - int(n * rho)


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def evenly(n: int, k: int) -> set[int]:
    return {int((2 * i + 1) * n // (2 * k)) for i in range(k)}


def lowest(values: np.ndarray, k: int) -> set[int]:
    return {int(i) for i in np.argsort(values, kind="stable")[:k]}


def stream(n_chunks=3, n_p=12, n_a=50, seed=0, d=D):
    g = torch.Generator().manual_seed(seed)
    return [EncodedChunk(i, torch.randn(2, n_p, d, generator=g), torch.randn(n_a, d, generator=g), (3, 4))
            for i in range(n_chunks)]


def frames_kept(out, index, n_p=12):
    """Kept grid indices per step of a compressed chunk, from positions."""
    pos = out.positions[:, out.is_video]
    result = [set(), set()]
    for t, r, c in pos.T.tolist():
        result[t // 25 - 2 * index].add(r * 4 + c)
    return result


def audio_kept(out, index):
    return {k - 50 * index for k in out.positions[0, ~out.is_video].tolist()}


@pytest.mark.parametrize("window", [4, 6])
def test_dycoke_prunes_later_frames_against_earlier_ones_within_windows_across_chunks(window):
    chunks, rho = stream(4), 0.7
    comp = make_compressor("dycoke", Ratios(rho, 0.3), window=window)
    frames = np.concatenate([c.video.numpy() for c in chunks])  # [8, 12, D]
    k = kept(12, rho)
    expected = []
    for f in range(len(frames)):
        off = f % window
        if off == 0:
            expected.append(evenly(12, k))
        else:
            ref = frames[f - 1] if off % 2 == 1 else frames[f - off]
            expected.append(lowest(cos(frames[f], ref), k))
    got = [s for i, c in enumerate(chunks) for s in frames_kept(comp.process(c), i)]
    assert got == expected
    assert all(audio_kept(comp.process(c), c.index) == evenly(50, kept(50, 0.3)) for c in chunks[:1])


def test_dycoke_full_anchor_keeps_the_window_first_frame_whole_and_reset_restarts_windows():
    chunks = stream(2)
    comp = make_compressor("dycoke", Ratios(0.7, 0.3), anchor="full")
    first = frames_kept(comp.process(chunks[0]), 0)
    assert first[0] == set(range(12)) and len(first[1]) == kept(12, 0.7)
    comp.reset()
    assert frames_kept(comp.process(chunks[1]), 1)[0] == set(range(12))


def test_timechat_ratio_and_threshold_modes_against_previous_frame_carried_across_chunks():
    chunks, rho = stream(3), 0.75
    frames = np.concatenate([c.video.numpy() for c in chunks])
    frames[3] = frames[2] + 0.05 * np.random.default_rng(0).standard_normal(frames[2].shape)  # mostly static
    chunks[1].video[1] = torch.from_numpy(frames[3])
    k = kept(12, rho)
    ratio = make_compressor("timechat", Ratios(rho, 0.3))
    got = [s for i, c in enumerate(chunks) for s in frames_kept(ratio.process(c), i)]
    assert got == [evenly(12, k)] + [lowest(cos(frames[f], frames[f - 1]), k) for f in range(1, 6)]
    tau = 0.2
    thr = make_compressor("timechat", Ratios(rho, 0.3), mode="threshold", threshold=tau)
    got = [s for i, c in enumerate(chunks) for s in frames_kept(thr.process(c), i)]
    expected = [set(range(12))] + [{int(j) for j in np.nonzero(cos(frames[f], frames[f - 1]) <= tau)[0]}
                                   for f in range(1, 6)]
    assert got == expected
    assert len(got[3]) < 3  # the static frame is almost entirely dropped


def _vidcom2_reference(chunks, rho):
    """VidCom2 with a running mean, written from the paper's formulas with numpy."""
    alphas = [2.0 ** e for e in range(-3, 2)]
    run_sum, run_n, out = None, 0, []
    for c in chunks:
        x = c.video.numpy().astype(np.float64)  # [2, n_p, D]
        steps, n_p, d = x.shape
        var = x.reshape(-1, d).var(0)
        ch = np.sort(np.argsort(var, kind="stable")[: d // 2])
        sel = x[..., ch] / np.linalg.norm(x[..., ch], axis=-1, keepdims=True)
        full = np.zeros_like(x)
        full[..., ch] = sel
        run_sum = full.sum((0, 1)) if run_sum is None else run_sum + full.sum((0, 1))
        run_n += steps * n_p
        vc = (run_sum / run_n)[ch]
        fc = sel.mean(1, keepdims=True)
        def gauss(a, b):
            return sum(np.exp(-((a - b) ** 2).sum(-1) / (2 * al)) for al in alphas)
        vs, fs = gauss(sel, vc), gauss(sel, fc)
        u = -vs.mean(-1)
        p = np.exp((u - u.max()) / 0.01)
        p /= p.sum()
        total = steps * kept(n_p, rho)
        share = (1 + p - p.mean()) * total / steps
        counts = np.minimum(np.floor(share).astype(int), n_p)
        while counts.sum() < total:
            room = np.where(counts >= n_p, -np.inf, share - counts)
            counts[int(np.argmax(room))] += 1
        out.append([lowest(vs[g] + fs[g], counts[g]) for g in range(steps)])
    return out


def test_vidcom2_against_numpy_reference_with_running_mean():
    chunks = stream(3, seed=4)
    chunks[1].video[0] *= 3.0  # an outlier frame gets more budget
    comp = make_compressor("vidcom2", Ratios(0.75, 0.3))
    got = [frames_kept(comp.process(c), i) for i, c in enumerate(chunks)]
    assert got == _vidcom2_reference(chunks, 0.75)
    assert all(len(a) + len(b) == 2 * kept(12, 0.75) for a, b in got)


def test_stvp_ablation_is_omnisift_video_with_uniform_audio():
    torch.manual_seed(0)
    sel = VisionGuidedAudioSelector(D).eval()
    for c in stream(2):
        a = make_compressor("stvp", Ratios(0.7, 0.3)).process(c)
        b = make_compressor("omnisift", Ratios(0.7, 0.3), sel).process(c)
        assert torch.equal(a.positions[:, a.is_video], b.positions[:, b.is_video])
        assert audio_kept(a, c.index) == evenly(50, kept(50, 0.3))


def test_vgas_ablation_is_uniform_video_then_vgas_on_it():
    torch.manual_seed(0)
    sel = VisionGuidedAudioSelector(D).eval()
    c = stream(1)[0]
    out = make_compressor("vgas", Ratios(0.75, 0.3), sel).process(c)
    k = kept(12, 0.75)
    assert frames_kept(out, 0) == [evenly(12, k), evenly(12, k)]
    idx = sorted(evenly(12, k))
    guide = torch.cat([c.video[0, idx], c.video[1, idx]])
    with torch.no_grad():
        expected = set(select_audio(sel(guide, c.audio), 0.3).tolist())
    assert audio_kept(out, 0) == expected


def test_omnizip_audio_selection_and_merge_against_loops():
    g = torch.Generator().manual_seed(1)
    audio, video = torch.randn(50, D, generator=g), torch.randn(24, D, generator=g)
    saliency = torch.rand(50, generator=g)
    mask, merged = select_and_merge_audio(audio, video, saliency, keep=35, contextual_ratio=0.1, g=3)
    a, v, s = audio.numpy().astype(np.float64), video.numpy().astype(np.float64), saliency.numpy()
    dominant = set(np.argsort(-s, kind="stable")[:30].tolist())
    rest = [i for i in range(50) if i not in dominant]
    anchors = [rest[j] for j in range(0, len(rest), len(rest) // 5)][:5]
    assert set(np.nonzero(mask.numpy())[0].tolist()) == dominant | set(anchors)
    pool = [i for i in rest if i not in anchors]
    expected = a.copy()
    for anchor in anchors:
        members = [i for i in pool if int(np.argmax([cos(a[i], a[b]) for b in anchors])) == anchors.index(anchor)]
        guide = {i: max(cos(a[i], v[j]) for j in range(24)) for i in members}
        chosen = sorted(members, key=lambda i: -guide[i])[:3]
        if chosen:
            w = np.exp([guide[i] for i in chosen])
            w /= w.sum()
            expected[anchor] = (a[anchor] + sum(wi * a[i] for wi, i in zip(w, chosen, strict=True))) / 2
    np.testing.assert_allclose(merged.numpy(), expected, atol=1e-5)


def test_omnizip_density_peaks_against_loops():
    x = torch.randn(9, D, generator=torch.Generator().manual_seed(2))
    xs = x.numpy().astype(np.float64)
    n = 9
    dist = np.array([[1 - cos(xs[i], xs[j]) for j in range(n)] for i in range(n)])
    rho = np.array([math.exp(-np.mean(sorted(dist[i, j] for j in range(n) if j != i)[:5])) for i in range(n)])
    delta = []
    for i in range(n):
        higher = [dist[i, j] for j in range(n) if rho[j] > rho[i]]
        delta.append(min(higher) if higher else max(dist[i, j] for j in range(n) if j != i))
    np.testing.assert_allclose(density_peak_scores(x).numpy(), rho * np.array(delta), rtol=1e-4)


def test_omnizip_saliency_is_last_layer_attention_received_in_the_towers_windows(audio_tower):
    """Independent: hook q/k projections during the normal encode and average softmax(qk^T) per window."""
    feats = torch.randn(128, 400, generator=torch.Generator().manual_seed(3))  # 4 s: two 2-second windows
    attn = audio_tower.layers[-1].self_attn
    seen = {}
    hooks = [attn.q_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("q", o)),
             attn.k_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("k", o))]
    with torch.no_grad():
        audio_tower(feats, feature_lens=torch.tensor([400]))
    for h in hooks:
        h.remove()
    q = seen["q"].view(-1, 2, 16).numpy().astype(np.float64)
    k = seen["k"].view(-1, 2, 16).numpy().astype(np.float64)
    frame = np.zeros(len(q))
    for start in (0, 100):  # 200 mel frames -> 100 frames after the stride-2 conv
        logits = np.einsum("qhd,khd->hqk", q[start:start + 100], k[start:start + 100]) / 4.0
        w = np.exp(logits - logits.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        frame[start:start + 100] = w.mean(0).mean(0)
    expected = (frame[0::2] + frame[1::2]) / 2
    from operators.baselines.omnizip import last_layer_attention_saliency

    np.testing.assert_allclose(last_layer_attention_saliency(audio_tower, feats).numpy(), expected, atol=1e-6)


def test_omnizip_video_ratio_follows_audio_retention_against_a_running_threshold(audio_tower, monkeypatch):
    from operators.baselines import omnizip

    chunks = stream(3, n_p=12)
    sal = [torch.linspace(0, 1, 50), torch.linspace(0.5, 1.5, 50), torch.linspace(-1, 0, 50)]
    calls = iter(sal)
    monkeypatch.setattr(omnizip.OmniZipCompressor, "audio_saliency", lambda self, chunk: next(calls))
    comp = make_compressor("omnizip", Ratios(0.7, 0.3), span=0.4)
    outs = [comp.process(c) for c in chunks]
    ka = kept(50, 0.3)
    thr0 = float(sal[0].sort(descending=True).values[ka - 1])
    r1 = float((sal[1] > thr0).float().mean())
    thr1 = (thr0 + float(sal[1].sort(descending=True).values[ka - 1])) / 2
    r2 = float((sal[2] > thr1).float().mean())
    rhos = [0.7, min(max(0.7 + 0.4 * (ka / 50 - r1), 0), 1), min(max(0.7 + 0.4 * (ka / 50 - r2), 0), 1)]
    assert [o.video_after for o in outs] == [2 * kept(12, r) for r in rhos]
    assert outs[1].video_after > outs[0].video_after > outs[2].video_after  # dense audio keeps more video
    assert all(o.audio_after == ka for o in outs)
    # video: density peaks on the first frame, least similar to the first on the second
    k1 = kept(12, rhos[1])
    v = chunks[1].video
    assert frames_kept(outs[1], 1) == [lowest(-density_peak_scores(v[0]).numpy(), k1),
                                       lowest(cos(v[1].numpy(), v[0].numpy()), k1)]


def test_omnizip_refuses_flash_attention_and_needs_the_tower(audio_tower):
    c = stream(1)[0]
    comp = make_compressor("omnizip", Ratios(0.7, 0.3))
    assert comp.flash_attention_compatible is False
    with pytest.raises(ValueError, match="audio tower"):
        comp.process(c)
    audio_tower.config._attn_implementation = "flash_attention_2"
    try:
        with pytest.raises(ValueError, match="FlashAttention"):
            comp.process(EncodedChunk(0, c.video, c.audio, c.grid_hw, torch.randn(128, 200), audio_tower))
    finally:
        audio_tower.config._attn_implementation = "sdpa"
