"""docker-compose.yml and the Dockerfile, checked as far as a machine without a Docker engine allows:
the structure, the GPU reservation, the published ports (loopback only), and that the config the app
runs loads and reads the stream the publisher pushes. Compose's own `config` check runs too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_pipeline_config
from streams.net import is_loopback

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_are_mediamtx_publisher_ray_head_and_app(compose):
    assert set(compose["services"]) == {"mediamtx", "publisher", "ray-head", "app"}
    assert compose["services"]["mediamtx"]["image"].startswith("bluenviron/mediamtx:")
    for name, svc in compose["services"].items():
        assert ":" in svc["image"] and not svc["image"].endswith(":latest") or name in ("ray-head", "app"), name
        for dep in svc.get("depends_on", []):
            assert dep in compose["services"], (name, dep)


def test_app_reserves_a_gpu_and_joins_the_ray_head(compose):
    app = compose["services"]["app"]
    devices = app["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    command = " ".join(app["command"])
    assert "ray start --address=ray-head:6379" in command and "omnisift run configs/compose.yaml" in command
    head = " ".join(compose["services"]["ray-head"]["command"])
    assert "--head" in head and "--port=6379" in head
    assert app["image"] == compose["services"]["ray-head"]["image"]


def test_published_ports_are_loopback_only(compose):
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_the_app_config_reads_what_the_publisher_pushes(compose):
    cfg = load_pipeline_config(ROOT / "configs" / "compose.yaml")
    url = cfg.streams[0].source["url"]
    assert url == "rtsp://mediamtx:8554/door"
    assert compose["services"]["publisher"]["command"].split()[-1] == url
    assert cfg.ray.address == "auto"
    assert cfg.resources.encoder.num_gpus + cfg.resources.model.num_gpus <= 1.0  # one reserved GPU
    # the container binds every interface on purpose, said explicitly; compose keeps it on the host's loopback
    assert not is_loopback(cfg.zmq.rep) and cfg.zmq.allow_insecure_remote
    published = {p.split(":")[-1] for p in compose["services"]["app"]["ports"]}
    assert {cfg.zmq.pub.rsplit(":", 1)[1], cfg.zmq.rep.rsplit(":", 1)[1], str(cfg.metrics.port)} <= published


def test_the_dashboard_is_published_on_loopback_and_needs_the_token(compose):
    cfg = load_pipeline_config(ROOT / "configs" / "compose.yaml")
    app = compose["services"]["app"]
    assert f"127.0.0.1:{cfg.http.port}:{cfg.http.port}" in app["ports"]
    assert not cfg.http.loopback and app["environment"][cfg.http.token_env] == "${OMNISIFT_HTTP_TOKEN:-}"
    data = next(v.split(":")[1] for v in app["volumes"] if v.startswith("omnisift-data:"))
    assert cfg.history.path.startswith(data + "/") and cfg.clips.dir.startswith(data + "/")


def test_dockerfile_installs_the_lock_then_the_package_and_runs_the_pipeline():
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert lines[0].startswith("FROM python:3.11")
    assert any("ffmpeg" in ln for ln in lines)
    lock = next(i for i, ln in enumerate(lines) if ln == "RUN pip install --require-hashes -r requirements/main.lock")
    package = next(i for i, ln in enumerate(lines) if ln.startswith("RUN pip install --no-deps") and ln.endswith(" ."))
    assert lock < package  # the tested versions first; the package adds nothing to them
    for package in ("streams", "operators", "omnisift", "pipeline", "configs"):
        assert any(ln.startswith(f"COPY {package} ") for ln in lines), package
    assert lines[-1] == 'CMD ["omnisift", "run", "configs/compose.yaml"]'


def test_docker_compose_validates_the_file():
    """Compose's own schema check (`docker-compose config` needs no engine; tests/run.sh installs it)."""
    out = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def test_docker_compose_sees_the_gpu_reservation_and_loopback_ports():
    out = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    resolved = yaml.safe_load(out.stdout)
    devices = resolved["services"]["app"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["count"] == 1
    published = [p for svc in resolved["services"].values() for p in svc.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published)  # v1 prints short syntax
