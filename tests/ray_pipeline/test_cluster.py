"""A simulated two-node cluster (`ray.cluster_utils.Cluster`): actors go where the config's resources say."""

from __future__ import annotations

import pytest

from pipeline.ray import OmniStream
from tests.ray_pipeline.conftest import next_matching, pipeline_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def two_nodes():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"camera_node": 1}})
    worker = cluster.add_node(num_cpus=1, resources={"gpu_node": 1})
    ray.init(address=cluster.address, namespace="omnisift-cluster-test", log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    head_id = ray.get_runtime_context().get_node_id()  # the driver attaches to the head node
    yield {"head": head_id, "worker": worker.node_id}
    ray.shutdown()
    cluster.shutdown()


async def test_actors_are_placed_by_resources_across_two_nodes(two_nodes, tiny_model_path, av_file):
    resources = {"source": {"num_cpus": 0, "resources": {"camera_node": 0.5}},
                 "encoder": {"num_cpus": 0.25, "resources": {"gpu_node": 0.5}},
                 "model": {"num_cpus": 0.25, "resources": {"gpu_node": 0.5}}}
    cfg = pipeline_config(tiny_model_path, [{"name": "clip", "source": {"type": "file", "path": str(av_file)}}],
                          resources=resources, zmq={"pub": None, "rep": None}, metrics={"port": None})
    async with OmniStream.from_config(cfg) as p:
        assert p.config.ray.address is None and not p._owns_ray  # joined the running cluster
        await next_matching(p.stats("clip"), lambda s: s.index == 3, 90)
        source_node = p.streams["clip"].source_where["node_id"]  # the source actor ended with the file
        encoder_node = (await p.encoder.where.remote())["node_id"]
        model_node = (await p.model.where.remote())["node_id"]
        assert source_node == two_nodes["head"]
        assert encoder_node == model_node == two_nodes["worker"]
        answer = await p.ask("What is on screen?", "clip", timeout=60)
        assert answer.media_time == 8.0


async def test_resources_no_node_has_fail_clearly_instead_of_hanging(two_nodes, tiny_model_path):
    import asyncio

    cfg = pipeline_config(tiny_model_path, [], resources={"model": {"num_cpus": 0, "resources": {"tpu_node": 1}}},
                          zmq={"pub": None, "rep": None}, metrics={"port": None}, ray={"actor_start_timeout": 5})
    stream = OmniStream.from_config(cfg)
    with pytest.raises(TimeoutError, match=r"model \{tpu_node: 1\}"):
        await asyncio.wait_for(stream.start(), 60)
    assert stream.model is None and stream.encoder is None  # start() cleaned up after itself


async def test_replicas_are_spread_over_the_two_nodes(two_nodes, tiny_model_path, av_file):
    # each node could hold all four actors (0.25 CPU each of its 1): only the SPREAD placement separates them
    resources = {"source": {"num_cpus": 0}, "encoder": {"num_cpus": 0.25}, "model": {"num_cpus": 0.25}}
    cfg = pipeline_config(tiny_model_path, [{"name": "clip", "source": {"type": "file", "path": str(av_file)}}],
                          model={"replicas": 2}, resources=resources, zmq={"pub": None, "rep": None},
                          metrics={"port": None})
    async with OmniStream.from_config(cfg) as p:
        nodes = {kind: [(await a.where.remote())["node_id"] for a in p.replicas.handles[kind]]
                 for kind in ("encoder", "model")}
        snap = p.snapshot()
        await next_matching(p.stats("clip"), lambda s: s.index == 3, 90)
    both = {two_nodes["head"], two_nodes["worker"]}
    assert set(nodes["model"]) == both and set(nodes["encoder"]) == both  # one replica of each kind per node
    assert [r["node"] for r in snap["replicas"]["model"]] == nodes["model"]  # as where() says
    placed = snap["streams"]["clip"]["replica"]
    assert placed["node"] == nodes["model"][placed["model"]]
