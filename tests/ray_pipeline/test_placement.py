"""GPU placement by default: the plan (pure), the one-line refusals, the memory bound, and on local Ray with
logical GPUs (`ray.init(num_gpus=N)`) the GPU each encoder and model actor is given, read inside the actor
(`ray.get_gpu_ids()`, CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from pipeline.config import ActorResources, ModelConfig, ResourcesConfig
from pipeline.ray import placement
from pipeline.ray.placement import ENCODER_SHARE, MODEL_SHARE, PlacementError, bound_gpu_memory, plan_placement


def _plan(gpus: float, resources: dict | None = None, **model):
    spec = ModelConfig(**model)
    return plan_placement(spec, ResourcesConfig.model_validate(resources or {}), {"CPU": 16.0, "GPU": gpus})


def test_without_gpus_nothing_asks_for_one():
    plan = _plan(0, replicas="auto")
    assert (plan.models, plan.encoders, plan.model.num_gpus, plan.encoder.num_gpus, plan.bundles) == (1, 1, 0, 0, [])


@pytest.mark.parametrize("gpus", [1, 4, 8])
def test_auto_puts_one_model_replica_on_each_gpu_with_its_encoder_beside_it(gpus):
    plan = _plan(gpus, replicas="auto")
    assert (plan.models, plan.encoders) == (gpus, gpus)
    assert (plan.model.num_gpus, plan.encoder.num_gpus) == (MODEL_SHARE, ENCODER_SHARE)
    # one bundle (one whole GPU) per model replica; model i and encoder i in bundle i
    assert [b["GPU"] for b in plan.bundles] == [1.0] * gpus
    assert [plan.model_bundle(i) for i in range(gpus)] == list(range(gpus))
    assert [plan.encoder_bundle(j) for j in range(gpus)] == list(range(gpus))
    # the CPUs of both actors are in their bundle (0.5 each by default), or Ray could not place them there
    assert all(b["CPU"] == 1.0 for b in plan.bundles)


def test_a_model_on_the_cpu_asks_no_gpu_even_where_there_are_gpus():
    plan = _plan(4, replicas=2, device="cpu")
    assert (plan.model.num_gpus, plan.encoder.num_gpus, plan.bundles) == (0, 0, [])


def test_num_gpus_the_config_gives_is_taken_as_given():
    plan = _plan(2, {"encoder": {"num_gpus": 0.4}, "model": {"num_gpus": 0.6, "num_cpus": 1}}, replicas=2)
    assert (plan.model.num_gpus, plan.encoder.num_gpus) == (0.6, 0.4)
    assert plan.bundles == [{"GPU": 1.0, "CPU": 1.0}, {"GPU": 1.0, "CPU": 1.0}]  # the encoder entry gave no CPU
    zero = _plan(2, {"encoder": {"num_gpus": 0}, "model": {"num_gpus": 0}}, replicas=2)
    assert (zero.model.num_gpus, zero.encoder.num_gpus, zero.bundles) == (0, 0, [])


def test_two_encoders_per_model_replica_share_its_bundle():
    plan = _plan(4, replicas=2, encoder_replicas=4)
    assert [plan.encoder_bundle(j) for j in range(4)] == [0, 1, 0, 1]
    assert [b["GPU"] for b in plan.bundles] == [2.0, 2.0]  # 0.75 + 2 x 0.25 = 1.25: two whole GPUs each
    with pytest.raises(PlacementError, match="^model replica 0 and its encoders ask for 1.25 GPU of one card"):
        _plan(3, replicas=2, encoder_replicas=4)  # 2.5 GPUs asked of 3, but as two bundles of 2


def test_gpus_the_cluster_lacks_are_one_line_naming_both():
    # the rtsp and webcam configs on a machine without a GPU (issue 30, point 5)
    rtsp = {"encoder": {"num_cpus": 1, "num_gpus": 0.4}, "model": {"num_cpus": 1, "num_gpus": 0.6}}
    with pytest.raises(PlacementError) as info:
        _plan(0, rtsp)
    assert str(info.value) == ("the actors ask for 1 GPU (1 model x 0.6 GPU, 1 encoder x 0.4 GPU); the Ray cluster "
                               "has 0: set resources.model/encoder.num_gpus (0 runs on the CPU) or add GPUs")


def test_two_model_replicas_on_one_gpu_are_refused_in_one_line():
    with pytest.raises(PlacementError) as info:
        _plan(1, {"encoder": {"num_gpus": 0.1}, "model": {"num_gpus": 0.4}}, replicas=2)
    assert str(info.value) == ("2 model replicas would share 1 GPU (two model replicas on one GPU is refused: each "
                               "holds its own weights and KV cache); give model.replicas at most 1 or auto")
    with pytest.raises(PlacementError, match=r"^the actors ask for 2 GPU \(2 model x 0.75 GPU, 2 encoder x 0.25"):
        _plan(1, replicas=2)  # the default split: two model replicas do not fit one GPU


def test_each_actor_bounds_its_share_of_the_card(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: calls.append((f, d)))
    assert bound_gpu_memory(MODEL_SHARE) == MODEL_SHARE
    assert bound_gpu_memory(0.25, "cuda:1") == 0.25
    assert bound_gpu_memory(1.0) is None and bound_gpu_memory(0.0) is None and bound_gpu_memory(None) is None
    assert bound_gpu_memory(0.5, "cpu") is None
    assert calls == [(0.75, None), (0.25, 1)]


def test_no_cuda_no_bound(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bound_gpu_memory(0.5) is None


def test_the_workers_bound_their_memory_before_loading(monkeypatch):
    from pipeline.ray.encoder_worker import EncoderWorker
    from pipeline.ray.model_worker import ModelWorker

    order = []
    for module in ("encoder_worker", "model_worker"):
        monkeypatch.setattr(f"pipeline.ray.{module}.bound_gpu_memory", lambda f, d: order.append(("bound", f)))
        monkeypatch.setattr(f"pipeline.ray.{module}.load_omni", lambda spec, part: order.append(("load", part)))
    EncoderWorker({"path": "m"}, num_gpus=0.25)
    ModelWorker({"path": "m"}, num_gpus=0.75).close()
    assert order == [("bound", 0.25), ("load", "towers"), ("bound", 0.75), ("load", "language")]


@pytest.fixture(scope="module")
def gpu_ray():
    """Local Ray with two logical GPUs (no physical one is needed: Ray hands out the ids)."""
    import ray

    from pipeline.ray.local import start_local_ray

    if ray.is_initialized():
        ray.shutdown()
    start_local_ray(num_cpus=2, num_gpus=2, include_dashboard=False, namespace="omnisift-tests",
                    log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.timeout(300)
async def test_each_replica_gets_the_gpu_its_placement_says(gpu_ray, tiny_model_path):
    from pipeline.ray import OmniStream
    from tests.ray_pipeline.conftest import pipeline_config

    cfg = pipeline_config(tiny_model_path, [], model={"replicas": "auto", "device": None},
                          zmq={"pub": None, "rep": None})
    async with OmniStream.from_config(cfg) as p:
        models, encoders = p.replicas.handles["model"], p.replicas.handles["encoder"]
        assert len(models) == len(encoders) == 2  # one model replica per GPU
        seen = {kind: [await a.where.remote() for a in p.replicas.handles[kind]] for kind in ("model", "encoder")}
        resources = gpu_ray.available_resources().get("GPU", 0.0)
    for kind in ("model", "encoder"):
        for w in seen[kind]:
            assert len(w["gpus"]) == 1 and w["cuda_visible_devices"] == w["gpus"][0]
    model_gpus = [w["gpus"][0] for w in seen["model"]]
    assert sorted(model_gpus) == ["0", "1"]  # never two model replicas on one GPU
    # encoder j sits beside model replica j (bundle j), on its GPU
    assert [w["gpus"][0] for w in seen["encoder"]] == model_gpus
    assert resources == 0.0  # the placement group holds both GPUs while the pipeline runs
    for _ in range(50):  # the group's GPUs are given back when the pipeline closes (Ray frees them shortly)
        if gpu_ray.available_resources().get("GPU", 0.0) == 2.0:
            break
        await asyncio.sleep(0.1)
    assert gpu_ray.available_resources().get("GPU", 0.0) == 2.0


@pytest.mark.timeout(60)
async def test_a_placement_the_cluster_cannot_give_fails_at_once_in_one_line(gpu_ray, tiny_model_path):
    from pipeline.ray import OmniStream
    from tests.ray_pipeline.conftest import pipeline_config

    cfg = pipeline_config(tiny_model_path, [], model={"replicas": 2, "device": None}, zmq={"pub": None, "rep": None},
                          resources={"encoder": {"num_gpus": 0.5}, "model": {"num_gpus": 1}})
    started = time.monotonic()
    with pytest.raises(PlacementError) as info:
        async with OmniStream.from_config(cfg):
            pass
    assert time.monotonic() - started < 10
    assert str(info.value).startswith("the actors ask for 3 GPU (2 model x 1 GPU, 2 encoder x 0.5 GPU); "
                                      "the Ray cluster has 2")
    assert placement.MODEL_SHARE + placement.ENCODER_SHARE == 1.0
    assert ActorResources().num_gpus is None  # unset: the default split decides


@pytest.mark.timeout(200)
@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="about a machine without GPUs")
def test_run_of_the_rtsp_config_without_gpus_is_one_line_at_once(tiny_model_path, ray_tmp):
    # issue 30, point 5: it waited up to actor_start_timeout (600 s) for GPUs this machine does not have
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": ray_tmp}
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "configs/rtsp.yaml", "--model",
                          str(tiny_model_path), "--duration", "30"], capture_output=True, text=True, timeout=180,
                         env=env)
    took = time.monotonic() - started
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        "error: the actors ask for 1 GPU (1 model x 0.6 GPU, 1 encoder x 0.4 GPU); the Ray cluster has 0: set "
        "resources.model/encoder.num_gpus (0 runs on the CPU) or add GPUs")
    assert took < 120, f"{took:.0f} s"  # the CLI's imports and Ray's start; no wait for the actors
