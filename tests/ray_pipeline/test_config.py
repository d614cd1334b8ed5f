"""Pipeline configs: the shipped ones load; bad ones fail with one line naming the field and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import PipelineConfig, load_pipeline_config
from streams.errors import ConfigError
from streams.net import host_is_loopback, is_loopback

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.mark.parametrize("name", ["demo", "rtsp", "webcam"])
def test_shipped_configs_load_with_their_sources(name):
    cfg = load_pipeline_config(CONFIGS / f"{name}.yaml")
    assert isinstance(cfg, PipelineConfig) and cfg.streams
    assert cfg.streams[0].source["type"] in {"synthetic", "rtsp", "combined"}
    assert cfg.backpressure.drop_policy == "drop_oldest"
    assert all(is_loopback(ep) for ep in (cfg.zmq.pub, cfg.zmq.rep))


def test_demo_source_stays_endless():
    # a null in the source file must survive loading (a dropped null would fall back to a finite default)
    assert load_pipeline_config(CONFIGS / "demo.yaml").streams[0].source["duration"] is None


def _ok(**kw):
    return {"streams": [{"name": "a", "source": {"type": "synthetic", "duration": 4}}], **kw}


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (_ok(modle={}), ["unknown field", "modle"]),
        ({"streams": [{"name": "a", "source": {"type": "synthetic"}}, {"name": "a", "source": {"type": "synthetic"}}]},
         ["unique", "'a'"]),
        ({"streams": [{"name": "a", "source": {"type": "vhs"}}]}, ["streams[0]", "'type'", "'vhs'"]),
        ({"streams": [{"name": "a", "source": "no/such/source.yaml"}]}, ["streams[0]", "not found"]),
        ({"streams": [{"name": "bad name!", "source": {"type": "synthetic"}}]}, ["streams.0.name", "'bad name!'"]),
        (_ok(model={"retention": 0.25, "rho_video": 0.5}), ["retention", "rho_video"]),
        (_ok(model={"retention": 1.5}), ["model.retention", "1.5"]),
        (_ok(model={"encoder_batch": {"max_batch": 0}}), ["model.encoder_batch.max_batch", "0"]),
        (_ok(model={"encoder_batch": {"max_wait_ms": -1}}), ["model.encoder_batch.max_wait_ms", "-1"]),
        (_ok(model={"model_batch": {"batch_prefill": "no"}}), ["model.model_batch.batch_prefill", "'no'"]),
        (_ok(model={"model_batch": {"max_batch": 0}}), ["model.model_batch.max_batch", "0"]),
        (_ok(backpressure={"drop_policy": "drop_newest"}), ["backpressure.drop_policy", "'drop_newest'"]),
        (_ok(backpressure={"max_in_flight": 0}), ["backpressure.max_in_flight", "0"]),
        (_ok(backpressure={"restart_wait": -1}), ["backpressure.restart_wait", "-1"]),
        (_ok(zmq={"pub": "tcp://0.0.0.0:5560"}), ["beyond loopback", "zmq.curve"]),
        (_ok(zmq={"rep": "http://127.0.0.1:1"}), ["zmq.rep", "tcp://"]),
        (_ok(watch=[{"question": "x?", "stream": "nope"}]), ["watch", "'nope'"]),
        (_ok(watch=[{"question": "x" * 4097}]), ["watch question: question of 4097 characters is too long",
                                                  "at most 4096"]),
        (_ok(question="y" * 90, model={"max_question_tokens": 10}), ["question: question of 90 characters",
                                                                       "at most 80 (10 tokens"]),
        (_ok(model={"max_new_tokens": True}), ["model.max_new_tokens", "True"]),
        (_ok(metrics={"host": "0.0.0.0"}), ["metrics.host 0.0.0.0 is not loopback", "metrics.allow_remote"]),
        (_ok(ray={"address": "auto", "allow_remote": True}), ["ray.allow_remote is for a Ray this run starts"]),
        (_ok(resources={"model": {"num_gpus": -1}}), ["resources.model.num_gpus", "-1"]),
        (_ok(http={"port": 70000}), ["http.port", "70000"]),
        (_ok(http={"token": "abc"}), ["unknown field", "http.token"]),  # a token is never in a config file
        (_ok(http={"token_env": "not a name"}), ["http.token_env", "'not a name'"]),
        (_ok(history={"max_age_days": 0}), ["history.max_age_days", "0"]),
        (_ok(clips={"chunks_before": 16}), ["clips.chunks_before", "16"]),
        (_ok(webhooks={"targets": [{"name": "ops", "url": "ftp://x/y"}]}), ["webhooks.targets.0.url", "http://"]),
        (_ok(webhooks={"targets": [{"name": "a", "url": "http://h/1"}, {"name": "a", "url": "http://h/2"}]}),
         ["webhook target names must be unique", "'a'"]),
        (_ok(webhooks={"targets": [{"name": "ops", "url": "http://h/1", "events": ["stats"]}]}),
         ["webhooks.targets.0.events.0", "'stats'"]),
        ([1, 2], ["expected a mapping"]),
    ],
)
def test_bad_configs_name_the_field_and_value(config, words):
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(config)
    message = str(err.value)
    assert "\n" not in message and message.startswith("pipeline config")
    for w in words:
        assert w in message, message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_pipeline_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("streams: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline_config(bad)


def test_source_paths_resolve_next_to_the_config(tmp_path):
    (tmp_path / "src.yaml").write_text("source: {type: synthetic, duration: 4}\n")
    (tmp_path / "p.yaml").write_text("streams: [{name: s, source: src.yaml}]\n")
    assert load_pipeline_config(tmp_path / "p.yaml").streams[0].source["duration"] == 4


def test_remote_zmq_needs_curve_or_an_explicit_opt_out(tmp_path):
    cfg = load_pipeline_config(_ok(zmq={"pub": "tcp://0.0.0.0:5560", "curve": {"server_secret_file": "k"}}))
    assert cfg.zmq.curve.server_secret_file == "k"
    assert load_pipeline_config(_ok(zmq={"pub": "tcp://10.0.0.1:1", "allow_insecure_remote": True}))
    assert is_loopback("tcp://[::1]:5") and is_loopback("tcp://localhost:5") and not is_loopback("tcp://*:5")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.0.9", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("::ffff:127.0.0.1", True),  # an IPv6 socket bound to IPv4 loopback, as Ray's gRPC servers list it
    ("0.0.0.0", False), ("::", False), ("::ffff:10.0.0.1", False), ("192.0.2.2", False), ("*", False),
])
def test_loopback_hosts_include_ipv4_mapped_loopback(host, loopback):
    assert host_is_loopback(host) is loopback


@pytest.mark.parametrize(("section", "words"), [
    ({"runtime_sources": {"types": ["vhs"]}}, "runtime_sources.types.0"),
    ({"runtime_sources": {"rtsp": {"hosts": ["*.lan"]}}}, "not a host name, an address or a network"),
    ({"runtime_sources": {"rtsp": {"credentials": {"door": {"username_env": "A B", "hosts": ["10.0.0.5"]}}}}},
     "username_env"),
    ({"limits": {"max_streams": 0}}, "limits.max_streams"),
    ({"limits": {"min_watch_every": -1}}, "limits.min_watch_every"),
])
def test_a_bad_runtime_policy_or_limit_is_one_line_naming_it(section, words):
    from pipeline.config import load_pipeline_config
    from streams.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load_pipeline_config({"streams": [], **section})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_without_a_runtime_policy_no_source_type_may_be_added():
    from pipeline.config import load_pipeline_config

    config = load_pipeline_config({"streams": []})
    assert config.runtime_sources.types == [] and config.limits.max_streams == 16
