"""Configs: YAML and dicts validate; a bad config is one line naming the field and the value; URLs redacted."""

from __future__ import annotations

import numpy as np
import pytest

from streams import ConfigError, SourceError, load_source_config, open_source, read_chunks
from streams.config import FileSourceConfig, RtspSourceConfig


@pytest.mark.parametrize(
    ("config", "field", "value"),
    [
        ({"type": "rtsp", "url": "rtsp://cam/x", "transport": "quic"}, "transport", "quic"),
        ({"type": "file", "path": "a.mp4", "speed": -2}, "speed", "-2"),
        ({"type": "webcam", "fps": 0}, "fps", "0"),
        ({"type": "zmq", "endpoint": "udp://x"}, "endpoint", "udp://x"),
        ({"type": "file", "path": "a.mp4", "drop_policy": "newest"}, "drop_policy", "newest"),
        ({"type": "file", "path": "a.mp4", "colour": "blue"}, "colour", "blue"),
        ({"type": "hologram"}, "type", "hologram"),
        (
            {"type": "combined", "video": {"type": "webcam"}, "audio": {"type": "microphone", "backend": "oss"}},
            "audio.backend",
            "oss",
        ),
    ],
)
def test_bad_config_is_one_line_naming_field_and_value(config, field, value):
    with pytest.raises(ConfigError) as e:
        load_source_config(config)
    msg = str(e.value)
    assert "\n" not in msg and f"'{field}'" in msg and value in msg


def test_missing_required_field_is_named():
    with pytest.raises(ConfigError, match="field 'path' is required"):
        load_source_config({"type": "file"})


def test_yaml_path_with_source_key_loads(tmp_path):
    p = tmp_path / "source-cam.yaml"
    p.write_text("source:\n  type: file\n  path: /x.mp4\n  realtime: true\n")
    cfg = load_source_config(p)
    assert isinstance(cfg, FileSourceConfig) and cfg.realtime and cfg.policy == "drop_oldest"


def test_fast_file_reads_block_and_live_sources_drop_oldest():
    assert load_source_config({"type": "file", "path": "x"}).policy == "block"
    assert load_source_config({"type": "rtsp", "url": "rtsp://h/x"}).policy == "drop_oldest"


def test_rtsp_password_never_appears_in_repr_or_errors(monkeypatch):
    monkeypatch.setenv("CAM_USER", "admin")
    monkeypatch.setenv("CAM_PASS", "s3cret!")
    cfg = load_source_config(
        {"type": "rtsp", "url": "rtsp://127.0.0.1:1/x", "username_env": "CAM_USER", "password_env": "CAM_PASS",
         "connect_timeout": 0.5, "read_timeout": 0.5}
    )  # fmt: skip
    assert isinstance(cfg, RtspSourceConfig) and "s3cret" in cfg.resolved_url()
    assert "s3cret" not in repr(cfg)
    with pytest.raises(SourceError) as e:
        open_source(cfg)
    assert "s3cret" not in str(e.value) and "admin" not in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e2:
        load_source_config({"type": "rtsp", "url": "http://u:s3cret!@h/x"})
    assert "s3cret" not in str(e2.value)


def test_unset_credential_env_var_is_a_config_error(monkeypatch):
    monkeypatch.delenv("NOPE_PASS", raising=False)
    with pytest.raises(ConfigError, match="NOPE_PASS"):
        open_source({"type": "rtsp", "url": "rtsp://127.0.0.1:1/x", "password_env": "NOPE_PASS"})


def test_shipped_configs_validate():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[2] / "configs").glob("source-*.yaml"))
    assert configs
    for p in configs:
        load_source_config(p)


def test_synthetic_source_needs_no_system_packages():
    chunks = list(read_chunks({"type": "synthetic", "duration": 3, "width": 64, "height": 48}))
    assert [c.frames.shape for c in chunks] == [(4, 48, 64, 3), (2, 48, 64, 3)]
    spectrum = abs(np.fft.rfft(chunks[0].audio))
    assert np.argmax(spectrum) * 16000 / 32000 == 440.0  # the configured tone


def test_streams_imports_no_model_libraries():
    import subprocess
    import sys

    code = ("import streams, benchmarks.ingest, sys; "
            "print([m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'ray')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
