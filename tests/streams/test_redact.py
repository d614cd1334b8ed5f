"""Credentials in URLs never show in reprs, errors or logs, whatever characters the password holds."""

from __future__ import annotations

import logging

import pytest

from streams.config import RtspSourceConfig
from streams.redact import redact_url

# (text, expected): the expected redaction is written out by hand, not computed
CASES = [
    ("rtsp://admin:s3cret@cam.local:554/live", "rtsp://***@cam.local:554/live"),
    ("rtsp://admin:p@2Secret@10.0.0.5/stream1", "rtsp://***@10.0.0.5/stream1"),
    ("rtsp://admin:my secret@10.0.0.5/stream1", "rtsp://***@10.0.0.5/stream1"),
    ("rtsp://admin:a b@c@10.0.0.5/x", "rtsp://***@10.0.0.5/x"),
    ("rtsp://admin:pa:ss:word@cam/x", "rtsp://***@cam/x"),
    ("rtsp://admin:p%40ss%20word@cam/x", "rtsp://***@cam/x"),
    ("rtsp://admin@cam/x", "rtsp://***@cam/x"),
    ("rtsp://:only-password@cam/x", "rtsp://***@cam/x"),
    ("rtsps://admin:s3cret@cam", "rtsps://***@cam"),
    ("rtsp://admin:s3cret@cam?token=1", "rtsp://***@cam?token=1"),
    ("open rtsp://u:p@ss@cam/x failed: Connection refused", "open rtsp://***@cam/x failed: Connection refused"),
    ("a rtsp://u:x@cam/1 and http://v:y z@host/2", "a rtsp://***@cam/1 and http://***@host/2"),
    ("rtsp://u:pa/ss@cam/x", "rtsp://***@cam/x"),
    ("rtsp://cam.local:554/live", "rtsp://cam.local:554/live"),
    ("rtsp://cam:554 down, ask ops@corp", "rtsp://***@corp"),  # errs towards hiding: no "/" ends the authority
    ("rtsp://cam/x then mail ops@example.com", "rtsp://cam/x then mail ops@example.com"),
    ("no url here: user:pass@host", "no url here: user:pass@host"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_redact_url_hides_the_whole_userinfo(text, expected):
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://admin:p@2Secret@10.0.0.5/stream1",
        "rtsp://admin:my secret@10.0.0.5/s",
        "rtsp://admin:50%25 off@10.0.0.5/s",
    ],
)
def test_rtsp_config_repr_and_str_show_no_password_characters(url):
    cfg = RtspSourceConfig(type="rtsp", url=url)
    for text in (repr(cfg), str(cfg)):
        # (" off": the third password's last word; "off" alone is in the class name Backoff)
        assert "Secret" not in text and "secret" not in text and " off" not in text and "admin" not in text
        assert "***@10.0.0.5" in text


def test_redacted_url_in_a_log_line_hides_a_password_with_a_space(caplog):
    with caplog.at_level(logging.INFO):
        logging.getLogger("streams.test").info("cannot open %s", redact_url("rtsp://admin:my secret@cam/x"))
    assert "secret" not in caplog.text and "rtsp://***@cam/x" in caplog.text
