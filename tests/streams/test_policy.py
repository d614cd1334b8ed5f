"""The operator's policy for sources a client adds at runtime (`streams.policy`): deny by default, each rule
one line naming the field, and a property over generated source configs: whatever a client asks for, an
admitted source runs no program but the system ffmpeg, with an input format and device the policy allows,
and names no variable, path or host the operator did not list."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streams.device as device
from streams import producer_factory
from streams.errors import ConfigError, SourceError, SourceRefused
from streams.policy import SourcePolicy, admit

EVERYTHING = SourcePolicy(
    types=["file", "rtsp", "webcam", "microphone", "synthetic", "zmq", "world", "combined"],
    rtsp={"hosts": ["10.0.0.0/24", "cam-door.lan"],
          "credentials": {"door": {"username_env": "CAM_USER", "password_env": "CAM_PASS", "hosts": ["10.0.0.5"]}}},
    webcam={"devices": ["/dev/video0"]}, microphone={"devices": ["default"]},
)


def refused(raw, policy=EVERYTHING) -> str:
    with pytest.raises(SourceRefused) as e:
        admit(raw, policy)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_nothing_may_be_added_unless_the_policy_says_so():
    assert "type 'synthetic' may not be added at runtime (runtime_sources.types allows: none)" in refused(
        {"type": "synthetic"}, SourcePolicy())
    assert "allows: file" in refused({"type": "rtsp", "url": "rtsp://10.0.0.5/x"}, SourcePolicy(types=["file"]))


@pytest.mark.parametrize(("raw", "field"), [
    ({"type": "webcam", "device": "/dev/video0", "ffmpeg": "python3"}, "ffmpeg"),
    ({"type": "webcam", "device": "/dev/video0", "ffmpeg": "ffmpeg"}, "ffmpeg"),  # even the default
    ({"type": "microphone", "ffmpeg": "/bin/sh"}, "ffmpeg"),
    ({"type": "rtsp", "url": "rtsp://10.0.0.5/x", "username_env": "OMNISIFT_HTTP_TOKEN"}, "username_env"),
    ({"type": "rtsp", "url": "rtsp://10.0.0.5/x", "password_env": "HF_TOKEN"}, "password_env"),
    ({"type": "zmq", "endpoint": "tcp://0.0.0.0:5555", "allow_remote": True}, "allow_remote"),
    ({"type": "combined", "video": {"type": "webcam", "device": "/dev/video0", "ffmpeg": "sh"},
      "audio": {"type": "synthetic"}}, "video.ffmpeg"),
])
def test_fields_that_name_programs_variables_or_exposure_are_never_taken_from_a_client(raw, field):
    assert f"source field '{field}' is never taken from a runtime request" in refused(raw)


@pytest.mark.parametrize(("raw", "words"), [
    ({"type": "webcam", "input_format": "lavfi", "device": "testsrc,metadata=mode=print:file=/tmp/x"},
     "field 'input_format' must be one of v4l2"),
    ({"type": "webcam", "input_format": "mpegts", "device": "http://127.0.0.1:9/"}, "field 'input_format'"),
    ({"type": "webcam", "device": "/dev/video7"}, "field 'device' names a device that runtime_sources.webcam"),
    ({"type": "microphone", "backend": "lavfi", "device": "sine,ametadata=mode=print:file=/tmp/x"},
     "field 'backend' must be one of alsa, pulse"),
    ({"type": "microphone", "device": "hw:3"}, "runtime_sources.microphone.devices"),
    ({"type": "zmq", "endpoint": "ipc:///etc/passwd"}, "field 'endpoint' must be tcp:// at runtime"),
    ({"type": "zmq", "endpoint": "inproc://x"}, "must be tcp://"),
    ({"type": "zmq", "endpoint": "tcp://127.0.0.1:5555", "bind": False}, "runtime_sources.zmq.connect"),
    ({"type": "zmq", "endpoint": "tcp://10.1.2.3:5555", "bind": False}, "field 'bind' is false"),
    ({"type": "rtsp", "url": "rtsp://127.0.0.1:8554/x"}, "host '127.0.0.1', which runtime_sources.rtsp.hosts"),
    ({"type": "rtsp", "url": "rtsp://10.0.1.5/x"}, "host '10.0.1.5'"),
    ({"type": "rtsp", "url": "rtsp://cam-door.lan.evil.example/x"}, "host 'cam-door.lan.evil.example'"),
    ({"type": "rtsp", "url": "rtsp://10.0.0.9/x", "credentials": "door"}, "set 'door' is not for host '10.0.0.9'"),
    ({"type": "rtsp", "url": "rtsp://10.0.0.5/x", "credentials": "attic"}, "names 'attic', which is not a credential"),
])
def test_each_rule_refuses_in_one_line_naming_the_field(raw, words):
    assert words in refused(raw)


def test_rtsp_credentials_come_from_the_named_set_only_for_its_hosts():
    config = admit({"type": "rtsp", "url": "rtsp://10.0.0.5:8554/door", "credentials": "door"}, EVERYTHING)
    assert (config.username_env, config.password_env) == ("CAM_USER", "CAM_PASS")
    own = admit({"type": "rtsp", "url": "rtsp://me:secret@CAM-DOOR.lan/x"}, EVERYTHING)  # the client's own
    assert own.username_env is None and own.url == "rtsp://me:secret@CAM-DOOR.lan/x"


def test_a_file_must_resolve_to_a_regular_file_under_an_allowed_folder(tmp_path):
    media, other = tmp_path / "media", tmp_path / "private"
    media.mkdir(), other.mkdir()
    (media / "a.mp4").write_bytes(b"x")
    (other / "secret.mp4").write_bytes(b"x")
    (media / "link.mp4").symlink_to(other / "secret.mp4")
    os.mkfifo(media / "fifo.mp4")
    policy = SourcePolicy(types=["file"], file={"folders": [str(media)]})
    config = admit({"type": "file", "path": str(media / "sub" / ".." / "a.mp4")}, policy)
    assert str(config.path) == str((media / "a.mp4").resolve())  # what opens is the resolved path
    assert "not under a folder" in refused({"type": "file", "path": str(other / "secret.mp4")}, policy)
    assert "not under a folder" in refused({"type": "file", "path": str(media / "link.mp4")}, policy)
    assert "not under a folder" in refused({"type": "file", "path": str(media / ".." / "private" / "secret.mp4")},
                                           policy)
    assert "not a regular file" in refused({"type": "file", "path": str(media / "fifo.mp4")}, policy)
    assert "not a regular file" in refused({"type": "file", "path": str(media)}, policy)


def test_zmq_binds_loopback_and_listed_hosts_only():
    assert admit({"type": "zmq", "endpoint": "tcp://127.0.0.1:5599"}, EVERYTHING).endpoint == "tcp://127.0.0.1:5599"
    assert "host '0.0.0.0'" in refused({"type": "zmq", "endpoint": "tcp://0.0.0.0:5599"})
    listed = SourcePolicy(types=["zmq"], zmq={"hosts": ["10.0.0.2"]})
    assert admit({"type": "zmq", "endpoint": "tcp://10.0.0.2:5599"}, listed).allow_remote is True


def test_every_source_type_is_refused_unless_listed_and_can_be_listed():
    from streams.config import SOURCE_TYPES
    from streams.policy import SourceType

    assert set(SourceType.__args__) == set(SOURCE_TYPES)  # a new source type needs its place in the policy
    for kind in SOURCE_TYPES:
        assert f"type {kind!r} may not be added at runtime" in refused({"type": kind}, SourcePolicy())


def test_a_policy_with_a_bad_host_entry_is_a_config_error():
    with pytest.raises(ValueError, match="not a host name"):
        SourcePolicy(rtsp={"hosts": ["*.lan"]})


def test_what_is_not_a_source_config_is_still_a_config_error():
    with pytest.raises(ConfigError, match="field 'type' has bad value 'vhs'"):
        admit({"type": "vhs"}, EVERYTHING)


# ---- the property: an admitted source runs only the system ffmpeg, as the policy allows ------------------

TEXT = st.sampled_from(["ffmpeg", "python3", "/bin/sh", "/dev/video0", "/dev/video1", "default", "hw:0",
                        "testsrc,metadata=mode=print:file=/tmp/owned", "http://127.0.0.1:9/x", "../../etc/passwd"])
FIELDS = {
    "type": st.sampled_from(["file", "rtsp", "webcam", "microphone", "synthetic", "zmq", "combined", "vhs"]),
    "ffmpeg": TEXT, "device": TEXT, "path": TEXT,
    "input_format": st.sampled_from(["v4l2", "lavfi", "mpegts", "x11grab", "concat", "alsa"]),
    "backend": st.sampled_from(["alsa", "pulse", "lavfi"]),
    "endpoint": st.sampled_from(["tcp://127.0.0.1:5599", "tcp://0.0.0.0:5599", "ipc:///tmp/x", "inproc://y",
                                 "tcp://10.0.0.5:5599", "tcp://localhost:5599"]),
    "bind": st.booleans(), "allow_remote": st.booleans(),
    "url": st.sampled_from(["rtsp://10.0.0.5/x", "rtsp://127.0.0.1/x", "rtsp://evil.example/x", "rtsp://u:p@10.0.0.7/x"]),
    "username_env": st.sampled_from(["HOME", "OMNISIFT_HTTP_TOKEN"]), "password_env": st.sampled_from(["HF_TOKEN"]),
    "credentials": st.sampled_from(["door", "attic"]),
}
SINGLE = st.fixed_dictionaries({"type": FIELDS["type"]},
                               optional={k: v for k, v in FIELDS.items() if k != "type"})
RAW = st.one_of(SINGLE, st.fixed_dictionaries({"type": st.just("combined"), "video": SINGLE, "audio": SINGLE}))


class Ran(Exception):
    pass


@pytest.fixture
def recorded(monkeypatch):
    """Every program the device sources would start, recorded instead of run."""
    calls: list[list[str]] = []

    def record(cmd, *a, **kw):
        calls.append(list(cmd))
        raise Ran

    monkeypatch.setattr(subprocess, "run", record)
    monkeypatch.setattr(subprocess, "Popen", record)
    monkeypatch.setattr(device.os.path, "exists", lambda p: True)  # as if the listed camera were plugged in
    return calls


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=RAW)
def test_no_admitted_source_starts_anything_but_the_system_ffmpeg_with_allowed_arguments(raw, recorded):
    try:
        config = admit(raw, EVERYTHING)
    except (SourceRefused, ConfigError):
        return
    parts = [config.video, config.audio] if config.type == "combined" else [config]
    for part in parts:
        recorded.clear()
        if part.type in ("webcam", "microphone"):
            with pytest.raises(Ran):
                producer_factory(part)()
            cmd = recorded[0]
            assert cmd[0] == shutil.which("ffmpeg")
            fmt, dev = cmd[cmd.index("-f") + 1], cmd[cmd.index("-i") + 1]
            assert (fmt, dev) in (("v4l2", "/dev/video0"), ("alsa", "default"), ("pulse", "default"))
            assert not any("lavfi" in a or "file=" in a for a in cmd)
        if part.type == "zmq":
            host = part.endpoint[len("tcp://"):].rsplit(":", 1)[0]
            assert part.endpoint.startswith("tcp://") and host in ("127.0.0.1", "localhost") and part.bind
        if part.type == "rtsp":
            assert part.url.split("@")[-1].startswith(("10.0.0.", "cam-door.lan"))
            assert part.username_env in (None, "CAM_USER") and part.password_env in (None, "CAM_PASS")
            if part.username_env is not None:
                assert part.url.startswith("rtsp://10.0.0.5/")
        if part.type == "file":
            pytest.fail(f"a file outside every allowed folder was admitted: {part.path}")


def test_the_property_sees_a_refusal_when_the_policy_is_switched_off(recorded):
    """The check above fails when admission is not the policy's: the same probe without it runs python3."""
    from streams.config import load_source_config

    with pytest.raises((Ran, SourceError)):
        producer_factory(load_source_config({"type": "webcam", "device": "/dev/video0", "ffmpeg": "python3"}))()
    assert recorded and os.path.basename(recorded[0][0]).startswith("python3")
