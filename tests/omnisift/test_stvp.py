"""STVP (docs/design.md section 3) against a float64 plain-loop re-implementation and the release's count rule."""

from __future__ import annotations

import omnisift_reference as ref
import pytest
import torch

import omnisift
from omnisift.ratios import kept_count


def frames(n_p: int, d: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(n_p, d, generator=g)
    return f1, f1 + 0.7 * torch.randn(n_p, d, generator=g)


@pytest.mark.parametrize("n_p,rho", [(100, 0.29), (144, 0.7), (256, 0.8), (576, 0.75), (37, 0.5)])
def test_stvp_matches_plain_loop_saliency_and_floor_rule(n_p, rho):
    f1, f2 = frames(n_p, seed=n_p)
    keep1, keep2 = omnisift.stvp(f1, f2, rho)
    exp1, exp2 = ref.stvp(f1, f2, rho)
    assert keep1.tolist() == exp1
    assert keep2.tolist() == exp2
    assert keep1.dtype == keep2.dtype == torch.long


def test_stvp_drops_the_release_float_count_per_frame():
    # 0.29 * 100 is 28.999999999999996 in floating point; the release's int() drops 28, so 72 stay.
    f1, f2 = frames(100)
    keep1, keep2 = omnisift.stvp(f1, f2, 0.29)
    assert len(keep1) == len(keep2) == 72


# n * 0.7 is an integer k in exact arithmetic but k - 1e-14 in floats for exactly these n below 1000, so the
# release keeps one token more than the exact floor would (0.7 * 90 = 62.99999999999999: 62 dropped).
ONE_MORE_AT_0_7 = [90, 170, 180, 330, 340, 350, 360, 650, 660, 670, 680, 690, 700, 710, 720, 730]


@pytest.mark.parametrize("n", ONE_MORE_AT_0_7)
def test_kept_count_keeps_one_more_than_the_exact_floor_where_the_float_product_falls_short(n):
    assert kept_count(n, 0.7) == n - 7 * n // 10 + 1


@pytest.mark.parametrize("n", [1, 10, 89, 100, 144, 256, 576, 1000])
def test_kept_count_equals_the_exact_floor_elsewhere(n):
    assert kept_count(n, 0.7) == n - 7 * n // 10


def test_stvp_survivors_are_sorted_and_highest_saliency():
    f1, f2 = frames(64, seed=3)
    keep1, keep2 = omnisift.stvp(f1, f2, 0.6)
    assert torch.all(keep1[1:] > keep1[:-1]) and torch.all(keep2[1:] > keep2[:-1])
    s2 = ref.temporal_saliency(f1.double().numpy(), f2.double().numpy())
    dropped = sorted(set(range(64)) - set(keep2.tolist()))
    assert min(s2[keep2.tolist()]) > max(s2[dropped])


def test_stvp_rho_zero_keeps_everything():
    f1, f2 = frames(50)
    keep1, keep2 = omnisift.stvp(f1, f2, 0.0)
    assert keep1.tolist() == keep2.tolist() == list(range(50))


def test_stvp_rho_one_drops_everything():
    f1, f2 = frames(50)
    keep1, keep2 = omnisift.stvp(f1, f2, 1.0)
    assert keep1.numel() == keep2.numel() == 0
    assert keep1.dtype == torch.long


def test_stvp_one_token_per_frame():
    f1, f2 = frames(1)
    assert [k.tolist() for k in omnisift.stvp(f1, f2, 0.7)] == [[0], [0]]  # floor(0.7) = 0 dropped
    assert [k.tolist() for k in omnisift.stvp(f1, f2, 1.0)] == [[], []]


def test_stvp_one_frame_chunk_uses_spatial_saliency_only():
    f1, _ = frames(40, seed=5)
    keep1, keep2 = omnisift.stvp(f1, None, 0.7)
    assert keep2 is None
    assert keep1.tolist() == ref.stvp(f1, None, 0.7)[0]


def test_stvp_temporal_saliency_compares_same_grid_position():
    # Frame 2 equals frame 1 except at tokens 3 and 11: only those can survive a keep of two.
    f1, _ = frames(16, seed=7)
    f2 = f1.clone()
    f2[3] = -f1[3]
    f2[11] = torch.randn(32, generator=torch.Generator().manual_seed(9))
    _, keep2 = omnisift.stvp(f1, f2, 14 / 16)
    assert keep2.tolist() == [3, 11]


def test_stvp_bf16_inputs_decide_like_fp32_upcast():
    # Well separated saliencies: a few tokens far from the mean / far from frame 1, the rest close.
    g = torch.Generator().manual_seed(11)
    base = torch.randn(1, 64, generator=g)
    f1 = base + 0.05 * torch.randn(80, 64, generator=g)
    f2 = f1 + 0.05 * torch.randn(80, 64, generator=g)
    outliers = torch.tensor([2, 17, 40, 41, 63, 79])
    f1[outliers] = torch.randn(6, 64, generator=g) * 3
    f2[outliers + 0] = -f1[outliers]
    b1, b2 = f1.bfloat16(), f2.bfloat16()
    k16 = omnisift.stvp(b1, b2, 1 - 6 / 80)
    k32 = omnisift.stvp(b1.float(), b2.float(), 1 - 6 / 80)
    assert k16[0].tolist() == k32[0].tolist() == outliers.tolist()
    assert k16[1].tolist() == k32[1].tolist() == outliers.tolist()


@pytest.mark.parametrize(
    "f1,f2",
    [
        (torch.randn(2, 4, 8), None),  # batched frame
        (torch.randn(8), None),  # 1-D
        (torch.randn(4, 8), torch.randn(4, 9)),  # different widths
    ],
)
def test_stvp_shape_errors_are_clear_value_errors(f1, f2):
    with pytest.raises(ValueError, match=r"\[n_p, D\] of one width"):
        omnisift.stvp(f1, f2, 0.5)


def test_stvp_keeps_a_second_frame_of_another_size_whole():
    f1, _ = frames(12, seed=13)
    f2 = torch.randn(20, 32, generator=torch.Generator().manual_seed(14))
    keep1, keep2 = omnisift.stvp(f1, f2, 0.7)
    assert keep1.tolist() == ref.stvp(f1, None, 0.7)[0]  # frame 1 still pruned spatially: 4 of 12 kept
    assert len(keep1) == 4 and keep2.tolist() == list(range(20))


@pytest.mark.parametrize("rho", [-0.1, 1.5, float("nan")])
def test_stvp_rejects_ratio_outside_unit_interval(rho):
    f1, f2 = frames(10)
    with pytest.raises(ValueError, match="rho_video"):
        omnisift.stvp(f1, f2, rho)
