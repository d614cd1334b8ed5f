"""The scale benchmark's GPU-facing parts: a clock that waits for the device, replicas that share one GPU
instead of each waiting for its own, a placement the cluster cannot give refused at once, and forward-level
contexts of the length asked for (a reduced run on the CPU)."""

from __future__ import annotations

import pytest
import torch

from benchmarks import scale


def test_the_clock_waits_for_cuda_work_and_not_on_the_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    scale.clock("cpu")
    assert calls == []
    scale.clock("cuda:1")
    assert calls == ["cuda:1"]


@pytest.mark.parametrize("gpus,per_replica", [(1, 0.5), (2, 1.0), (8, 1.0)])
def test_two_replicas_share_one_gpu_and_take_one_each_when_there_are_enough(gpus, per_replica):
    assert scale.replica_gpus("cuda", gpus, 2) == per_replica
    assert scale.replica_gpus("cpu", gpus, 2) == 0.0


def test_no_gpu_for_cuda_replicas_is_one_line():
    with pytest.raises(SystemExit, match=r"^--device cuda: no GPU to place 2 replicas on"):
        scale.replica_gpus("cuda", 0, 2)


def test_a_placement_the_cluster_cannot_give_is_refused_at_once(local_ray):
    have = local_ray.cluster_resources().get("GPU", 0.0)
    with pytest.raises(SystemExit) as info:
        scale.check_placement(have + 1.0, 1)
    assert str(info.value) == f"1 replicas x {have + 1:g} GPU = {have + 1:g} GPUs asked; the Ray cluster has {have:g}"
    scale.check_placement(0.0, 2)  # no GPU asked: nothing to refuse


def test_forward_level_contexts_are_as_long_as_asked(tmp_path, monkeypatch):
    monkeypatch.setitem(scale.DEVICE, "device", "cpu")
    path = scale.make_model(tmp_path / "omni", width=128, layers=1)
    rows = scale.forward_ratios(path, [3], width=128, repeats=1, context_tokens=1000)
    prefix = rows[0]["context_tokens"] - sum(scale.context_chunks(s, 1000) for s in range(3)) * scale.CHUNK_TOKENS / 3
    assert [scale.context_chunks(s, 1000) for s in range(3)] == [4, 5, 6]  # 1000 / 209 = 4.8, give or take one
    assert 0 < prefix < 200  # the rest is the prompt before the first chunk
    assert all(rows[0][k] > 0 for k in ("prefill_seq_ms", "prefill_batched_ms", "decode_seq_ms", "decode_batched_ms"))
