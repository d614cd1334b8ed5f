"""`parse_message` is total: any parts give a valid `Message` or a `Refused` naming one known reason."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.zmq_source import MAX_ABS_T, REASONS, Message, Refused, parse_message

LIMIT = 1 << 20
FRAME_2x1 = bytes(range(6))  # a 2x1 RGB frame


def hdr(**fields) -> bytes:
    return json.dumps(fields).encode()


def video(**over) -> bytes:
    return hdr(**{"v": 1, "kind": "video", "t": 1.0, "width": 2, "height": 1, "format": "rgb24", **over})


def audio(**over) -> bytes:
    return hdr(**{"v": 1, "kind": "audio", "t": 1.0, "rate": 16000, "channels": 1, "format": "f32le", **over})


F32 = np.zeros(4, np.float32).tobytes()

REFUSALS = [
    ("no_parts", [], "parts"),
    ("three_parts", [video(), FRAME_2x1, b""], "parts"),
    ("video_without_payload", [video()], "parts"),
    ("over_max_bytes_in_all", [video(), bytes(LIMIT)], "oversized"),
    ("width_beyond_8192", [video(width=9000), FRAME_2x1], "oversized"),
    ("header_over_4096_bytes", [b" " * 4097 + video(), FRAME_2x1], "header_size"),
    ("not_utf8", [b"\xff\xfe{}", FRAME_2x1], "not_json"),
    ("empty_header", [b"", FRAME_2x1], "not_json"),
    ("truncated_json", [video()[:-1], FRAME_2x1], "not_json"),
    ("nested_5_deep", [b'{"a": [[[[1]]]]}', FRAME_2x1], "nesting"),
    ("nan", [video()[:-1] + b', "x": NaN}', FRAME_2x1], "nonfinite"),
    ("minus_infinity_as_t", [video().replace(b'"t": 1.0', b'"t": -Infinity'), FRAME_2x1], "nonfinite"),
    ("float_overflowing", [video().replace(b'"t": 1.0', b'"t": 1e999'), FRAME_2x1], "nonfinite"),
    ("25_digit_int", [video(width=10**24), FRAME_2x1], "huge_number"),
    (
        "30_character_float",
        [video().replace(b'"t": 1.0', b'"t": 1.0000000000000000000000000001'), FRAME_2x1],
        "huge_number",
    ),
    ("header_is_a_list", [b"[1, 2]", FRAME_2x1], "bad_field"),
    ("header_is_a_string", [b'"video"', FRAME_2x1], "bad_field"),
    ("duplicate_key", [b'{"kind": "video", "kind": "audio"}', FRAME_2x1], "bad_field"),
    ("version_2", [video(v=2), FRAME_2x1], "bad_field"),
    ("version_true", [video(v=True), FRAME_2x1], "bad_field"),
    ("version_1_0", [video(v=1.0), FRAME_2x1], "bad_field"),
    ("kind_missing", [hdr(t=1.0), FRAME_2x1], "bad_field"),
    ("kind_unknown", [video(kind="smell"), FRAME_2x1], "bad_field"),
    ("kind_a_list", [video(kind=["video"]), FRAME_2x1], "bad_field"),
    ("width_a_string", [video(width="2"), FRAME_2x1], "bad_field"),
    ("width_a_float", [video(width=2.0), FRAME_2x1], "bad_field"),
    ("width_true", [video(width=True), FRAME_2x1], "bad_field"),
    ("height_zero", [video(height=0), b""], "bad_field"),
    ("video_format_yuv", [video(format="yuv420p"), FRAME_2x1], "bad_field"),
    ("rate_7999", [audio(rate=7999), F32], "bad_field"),
    ("channels_9", [audio(channels=9), F32], "bad_field"),
    ("audio_format_a_number", [audio(format=5), F32], "bad_field"),
    ("extra_field", [video(gain=1.0), FRAME_2x1], "unknown_field"),
    ("t_missing", [hdr(kind="video", width=2, height=1), FRAME_2x1], "bad_time"),
    ("t_a_string", [video(t="soon"), FRAME_2x1], "bad_time"),
    ("t_null", [video(t=None), FRAME_2x1], "bad_time"),
    ("t_true", [video(t=True), FRAME_2x1], "bad_time"),
    ("t_1e10", [video(t=1e10), FRAME_2x1], "bad_time"),
    ("t_minus_1e308", [video(t=-1e308), FRAME_2x1], "bad_time"),
    ("video_payload_short", [video(), FRAME_2x1[:-1]], "size_mismatch"),
    ("audio_payload_not_whole_samples", [audio(), F32[:-1]], "size_mismatch"),
    ("audio_payload_empty", [audio(), b""], "size_mismatch"),
    ("stereo_payload_odd_samples", [audio(channels=2), F32[:4]], "size_mismatch"),
    ("end_with_payload", [hdr(kind="end"), b"x"], "size_mismatch"),
    ("nan_samples", [audio(), np.array([0, np.nan], np.float32).tobytes()], "bad_samples"),
    ("infinite_samples", [audio(), np.array([np.inf, 0], np.float32).tobytes()], "bad_samples"),
]


@pytest.mark.parametrize(("name", "parts", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_invalid_message_is_refused_with_its_reason(name, parts, reason):
    with pytest.raises(Refused) as e:
        parse_message(parts, LIMIT)
    assert e.value.reason == reason
    assert "\n" not in str(e.value) and len(str(e.value)) < 200


def test_video_message_gives_the_payload_as_an_image():
    msg = parse_message([video(t=5), FRAME_2x1], LIMIT)
    assert msg.kind == "video" and msg.t == 5.0
    assert msg.image.tolist() == [[[0, 1, 2], [3, 4, 5]]]


def test_s16_audio_is_scaled_to_float_and_deinterleaved():
    payload = np.array([16384, -32768, 0, 8192], "<i2").tobytes()
    msg = parse_message([audio(channels=2, rate=48000, format="s16le"), payload], LIMIT)
    assert msg.samples.dtype == np.float32 and msg.rate == 48000
    assert msg.samples.tolist() == [[0.5, -1.0], [0.0, 0.25]]


def test_f32_audio_beyond_full_scale_is_clipped():
    msg = parse_message([audio(), np.array([1.5, -3.0, 0.25, 0.0], "<f4").tobytes()], LIMIT)
    assert msg.samples[:, 0].tolist() == [1.0, -1.0, 0.25, 0.0]


def test_end_needs_no_payload_and_ignores_t():
    assert parse_message([hdr(v=1, kind="end")], LIMIT).kind == "end"
    assert parse_message([hdr(kind="end", t="whenever"), b""], LIMIT).kind == "end"


def test_epoch_seconds_are_a_valid_t():
    assert parse_message([video(t=1_754_000_000.25), FRAME_2x1], LIMIT).t == 1_754_000_000.25


# -- fuzzing ----------------------------------------------------------------------------------------------

KEYS = ["v", "kind", "t", "width", "height", "format", "rate", "channels", "x"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=0, max_value=20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e10, -1e10, 1e300, -1e308, 9.99e9, 8000, 192000, 8192, 8193]),
    st.sampled_from(["video", "audio", "end", "rgb24", "f32le", "s16le", "", "\u0000", "\ud800"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    max_leaves=12,
)
VALID = {
    "video": {"v": 1, "kind": "video", "t": 1.0, "width": 2, "height": 1, "format": "rgb24"},
    "audio": {"v": 1, "kind": "audio", "t": 1.0, "rate": 16000, "channels": 1, "format": "f32le"},
    "end": {"v": 1, "kind": "end"},
}


ODD_SAMPLES = st.lists(st.floats(width=32), min_size=2, max_size=2).map(lambda x: np.array(x, "<f4").tobytes())
RIGHT_PAYLOAD = {"video": FRAME_2x1, "audio": np.zeros(2, np.float32).tobytes(), "end": b""}


@st.composite
def near_valid_messages(draw) -> list[bytes]:
    """A valid message whose header has a few fields replaced by any JSON value, removed or added; the payload
    is usually the right size for the unchanged header, so the mutated field itself is what gets tested."""
    kind = draw(st.sampled_from(sorted(VALID)))
    h = dict(VALID[kind])
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.one_of(st.sampled_from(sorted(h)), st.sampled_from(KEYS)))
        if draw(st.integers(0, 3)):
            h[key] = draw(st.one_of(scalars, scalars, json_values))
        else:
            h.pop(key, None)
    payload = draw(
        st.one_of(st.just(RIGHT_PAYLOAD[kind]), st.just(RIGHT_PAYLOAD[kind]), st.binary(max_size=48), ODD_SAMPLES)
    )
    return [encode(h), payload]


def encode(h: dict) -> bytes:
    return json.dumps(h).encode("utf-8", "surrogatepass")


headers = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8).map(encode)
raw_headers = st.one_of(headers, st.binary(max_size=64), headers.map(lambda b: b[: len(b) // 2]))
messages = st.one_of(
    near_valid_messages(),
    near_valid_messages(),
    near_valid_messages().map(lambda m: m[:1]),
    near_valid_messages().map(lambda m: [*m, m[1]]),
    st.lists(st.binary(max_size=32), max_size=4),
    st.tuples(raw_headers, st.binary(max_size=48)).map(list),
)


def check_valid(msg: Message) -> None:
    assert msg.kind in ("video", "audio", "end")
    assert math.isfinite(msg.t) and abs(msg.t) < MAX_ABS_T
    if msg.kind == "video":
        assert msg.image.dtype == np.uint8 and msg.image.ndim == 3 and msg.image.shape[2] == 3
    if msg.kind == "audio":
        assert msg.samples.dtype == np.float32 and msg.samples.size > 0
        assert np.isfinite(msg.samples).all() and np.abs(msg.samples).max() <= 1.0


@settings(max_examples=500)
@given(messages)
def test_any_parts_give_a_valid_message_or_a_named_refusal(parts):
    try:
        msg = parse_message(parts, 4096)
    except Refused as e:
        assert e.reason in REASONS
    else:
        check_valid(msg)


@given(st.integers(0, 3000), st.sampled_from([b"[", b"{", b'{"a":']))
def test_any_nesting_is_refused_without_recursion(depth, opener):
    try:
        parse_message([opener * depth, FRAME_2x1], LIMIT)
    except Refused as e:
        assert e.reason in ("nesting", "not_json", "bad_field", "header_size")


any_number = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e10, -1e10, 9_999_999_999.0, 1e300, -1e308, 0, -1, 8192, 8193, 7999, 192001, 9]),
)


NUMERIC_FIELDS = [(kind, key) for kind in ("video", "audio") for key in VALID[kind] if key not in ("kind", "format")]


@settings(max_examples=500)
@given(st.sampled_from(NUMERIC_FIELDS), any_number)
def test_any_number_in_any_numeric_field_is_valid_or_refused(field, number):
    kind, key = field
    h = {**VALID[kind], key: number}
    try:
        msg = parse_message([encode(h), RIGHT_PAYLOAD[kind]], LIMIT)
    except Refused as e:
        assert e.reason in REASONS
    else:
        check_valid(msg)
