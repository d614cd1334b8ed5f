"""The synthetic monitoring world: deterministic for a seed, its media agree with its event log (checked by
replaying the log here and measuring pixels and spectra, not through the world's own state), the scenario's
rules hold over an hour, it runs as a source (paced, unpaced, endless) and as an mp4."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streams import ConfigError, load_source_config, open_source, read_chunks
from streams.config import WorldSourceConfig
from streams.world import (
    BACKGROUNDS,
    BEEP_SECONDS,
    OBJECT_COLOURS,
    PITCHES,
    SCENARIOS,
    SHAPES,
    WORDS,
    World,
    WorldEvent,
    WorldProducer,
    render,
)

PITCH_HZ = {"low": 400.0, "medium": 800.0, "high": 1600.0}  # the spec, not the code's table
RGB = {"black": (16, 16, 16), "blue": (30, 60, 200), "green": (30, 150, 60), "gray": (128, 128, 128),
       "red": (230, 30, 30), "yellow": (240, 220, 30), "white": (250, 250, 250)}


def replay(events: list[WorldEvent], t: float) -> tuple[str, set[str]]:
    """The background and the objects on screen at `t`, from the log alone."""
    background, objects = None, set()
    for e in events:
        if e.t > t:
            break
        if e.kind == "background":
            background = e.value
        elif e.kind == "appear":
            objects.add(e.value)
        elif e.kind == "leave":
            objects.discard(e.value)
    return background, objects


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / 16000)[spectrum.argmax()])


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = World(7), World(7), World(8)
    assert a.events(600) == b.events(600)
    assert a.events(600) != c.events(600)
    for t in (0.0, 33.5, 121.0):
        assert np.array_equal(a.frame(t), b.frame(t))
    assert np.array_equal(a.audio(40.0, 3.0), b.audio(40.0, 3.0))
    assert not np.array_equal(a.audio(40.0, 3.0), c.audio(40.0, 3.0))


def test_log_does_not_depend_on_how_it_is_read():
    whole = World(3, "busy").events(900)
    step = World(3, "busy")
    pieces = []
    for k in range(450):  # one chunk at a time, as a live reader would
        pieces += step.events(2.0 * k + 2.0, since=2.0 * k + 1e-9 if k else 0.0)
    assert pieces == whole
    # and the media of a late moment does not depend on what was rendered before
    assert np.array_equal(World(3, "busy").audio(800.0, 1.0), step.audio(800.0, 1.0))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_an_hour_keeps_the_scenario_rules(scenario):
    events = World(11, scenario).events(3600)
    assert events == sorted(events) and events[0] == WorldEvent(0.0, "background", events[0].value)
    on_screen: dict[str, float] = {}
    last_bg, sound_end, alarm_on = None, -10.0, None
    for e in events:
        if e.kind == "background":
            assert e.value in BACKGROUNDS and e.value != last_bg
            last_bg = e.value
        elif e.kind == "appear":
            colour, shape = e.value.split()
            assert colour in OBJECT_COLOURS and shape in SHAPES
            assert all(colour != n.split()[0] and shape != n.split()[1] for n in on_screen)
            on_screen[e.value] = e.t
            assert len(on_screen) <= 3
        elif e.kind == "leave":
            assert on_screen.pop(e.value) < e.t
        elif e.kind in ("beep", "word"):
            assert alarm_on is None and e.t >= sound_end + 1.0 - 1e-6
            assert e.value in (PITCHES if e.kind == "beep" else WORDS)
            sound_end = e.t + (BEEP_SECONDS if e.kind == "beep" else 0.8)
        elif e.value == "on":
            assert alarm_on is None and e.t >= sound_end + 1.0 - 1e-6
            alarm_on = e.t
        else:
            assert alarm_on is not None and e.t > alarm_on
            alarm_on, sound_end = None, e.t
    kinds = {k: sum(e.kind == k for e in events) for k in ("background", "appear", "beep", "word", "alarm")}
    assert all(n > 10 for n in kinds.values()), kinds


def test_busy_is_busier_than_quiet():
    assert len(World(1, "busy").events(1800)) > 2 * len(World(1, "quiet").events(1800))


def test_frames_show_what_the_log_says():
    world = World(5, "busy", width=224, height=224)
    events = world.events(300)
    checked_objects = 0
    for t in np.arange(0.0, 300.0, 2.5):
        background, objects = replay(events, float(t))
        img = world.frame(float(t)).reshape(-1, 3)
        colours = {name for name, rgb in RGB.items() if (img == rgb).all(1).sum() > 30}
        assert background in colours
        assert colours - {background} == {o.split()[0] for o in objects}
        checked_objects += len(objects)
    assert checked_objects > 50


def test_shapes_are_told_apart_by_their_fill():
    world = World(0, width=224, height=224)
    size = int(224 / 4 * 0.8)  # render: 80% of the smaller of a lane and a quarter of the width
    fills = {}
    world.events(400)
    for obj in world.timeline.objects:
        if obj.shape in fills:
            continue
        t = (obj.t_in + obj.t_out) / 2
        if len(world.timeline.objects_at(t)) == 1:
            fills[obj.shape] = (world.frame(t) == RGB[obj.colour]).all(-1).sum() / size**2
    world.events(400)
    assert fills["square"] == pytest.approx(1.0, abs=0.02)
    assert fills["circle"] == pytest.approx(np.pi / 4, abs=0.03)
    assert fills["triangle"] == pytest.approx(0.5, abs=0.04)


def test_audio_plays_what_the_log_says():
    world = World(9, "standard")
    events = world.events(600)
    beeps = [e for e in events if e.kind == "beep"]
    assert {e.value for e in beeps} == set(PITCHES)
    for e in beeps:
        assert abs(peak_hz(world.audio(e.t + 0.05, 0.2)) - PITCH_HZ[e.value]) < 15
    ons = [e.t for e in events if e.kind == "alarm" and e.value == "on"]
    offs = [e.t for e in events if e.kind == "alarm" and e.value == "off"]
    alarms = list(zip(ons, offs, strict=False))
    assert alarms
    for on, off in alarms:
        assert min(abs(peak_hz(world.audio(on + 0.05, 0.15)) - f) for f in (880, 660)) < 15
        assert np.sqrt(np.mean(world.audio(on, off - on) ** 2)) > 0.15
    words = [e for e in events if e.kind == "word"]
    assert words
    for e in words:
        assert np.sqrt(np.mean(world.audio(e.t, 0.4) ** 2)) > 0.05
    sounds = world.timeline.sounds_between(0.0, 600.0)
    silent = [t for t in np.arange(0.0, 600.0, 0.5) if all(t + 0.5 <= s.t or t >= s.end for s in sounds)]
    assert len(silent) > 100
    for t in silent[:50]:
        assert np.sqrt(np.mean(world.audio(float(t), 0.5) ** 2)) < 0.02  # the noise floor only


def test_each_word_is_spoken_once_per_process(monkeypatch):
    calls = []
    real = render.subprocess.run

    def counting(cmd, **kw):
        calls.append(cmd[-1])
        return real(cmd, **kw)

    render.spoken.cache_clear()
    monkeypatch.setattr(render.subprocess, "run", counting)
    world = World(2, "busy")
    world.audio(0.0, 300.0)
    world.audio(0.0, 300.0)
    spoken = {e.value for e in world.events(300.0) if e.kind == "word"}
    assert sorted(calls) == sorted(spoken) and len(spoken) > 3
    x = render.spoken("seven")
    assert 0.2 < len(x) / 16000 <= 0.8 and np.abs(x).max() == pytest.approx(1.0, abs=1e-3)


def test_world_source_chunks_match_the_world():
    config = {"type": "world", "seed": 4, "scenario": "busy", "duration": 21, "width": 96, "height": 64}
    world = World(4, "busy", width=96, height=64, duration=21)
    chunks = list(read_chunks(config))
    assert [c.start for c in chunks] == [2.0 * k for k in range(11)]
    assert chunks[-1].flags.partial and len(chunks[-1].audio) == 16000
    for c in chunks[:-1]:
        assert c.frames.shape == (4, 64, 96, 3) and c.audio.shape == (32000,)
        for i in range(4):
            assert np.array_equal(c.frames[i], world.frame(c.start + 0.5 * i))
        assert np.array_equal(c.audio, world.audio(c.start, 2.0))
    assert world.events(100) == [e for e in World(4, "busy").events(100) if e.t < 21]


def test_endless_world_runs_until_closed():
    src = open_source({"type": "world", "duration": None, "width": 64, "height": 64, "queue_size": 2})
    try:
        got = [src.get(timeout=10) for _ in range(40)]  # 80 s of media: past any default length
    finally:
        src.close(timeout=3)
    assert [c.start for c in got] == [2.0 * k for k in range(40)]
    assert src.state.value == "closed"


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.waits = []

    def __call__(self):
        return self.now

    def wait(self, seconds):
        self.waits.append(seconds)
        self.now += seconds
        return False


def test_realtime_pacing_releases_media_at_its_time():
    clock = FakeClock()
    producer = WorldProducer(World(1, duration=6, width=64, height=64), realtime=True, speed=2.0,
                             clock=clock, wait=clock.wait)
    released = [(e.t, clock.now) for e in producer]
    assert released[-1][0] == 5.5
    for t, now in released:
        assert now == pytest.approx(100.0 + t / 2.0)
    assert sum(clock.waits) == pytest.approx(5.5 / 2.0)


def test_realtime_stops_when_closed():
    producer = WorldProducer(World(1, duration=None, width=64, height=64), realtime=True, speed=1.0)
    it = iter(producer)
    next(it)
    producer.close()
    assert list(it) == []


def test_config_validates_and_names_the_field():
    config = load_source_config({"type": "world", "seed": 3, "scenario": "quiet", "realtime": True})
    assert isinstance(config, WorldSourceConfig) and config.live and config.policy == "drop_oldest"
    assert not load_source_config({"type": "world"}).live
    assert set(WorldSourceConfig.model_fields["scenario"].annotation.__args__) == set(SCENARIOS)
    for bad, field in (({"scenario": "riot"}, "scenario"), ({"seed": -1}, "seed"), ({"width": 101}, "width"),
                       ({"duration": 0}, "duration")):
        with pytest.raises(ConfigError) as e:
            load_source_config({"type": "world", **bad})
        assert "\n" not in str(e.value) and f"field '{field}'" in str(e.value)
    with pytest.raises(ValueError, match="field 'width'"):
        World(0, width=33)
    with pytest.raises(ValueError, match="field 'scenario'"):
        World(0, "riot")


def test_written_mp4_plays_the_world_and_carries_its_log(tmp_path):
    world = World(6, "busy", width=128, height=96)
    path = world.write_mp4(tmp_path / "w.mp4", 8.0)
    lines = [json.loads(x) for x in (tmp_path / "w.mp4.events.jsonl").read_text().splitlines()]
    assert lines == [{"t": e.t, "kind": e.kind, "value": e.value} for e in world.events(8.0)]
    chunks = list(read_chunks({"type": "file", "path": str(path)}))
    assert [c.start for c in chunks[:4]] == [0.0, 2.0, 4.0, 6.0]
    for c in chunks[:4]:
        for i in range(4):
            t = c.start + 0.5 * i
            background, _ = replay(world.events(8.0), t)
            corner = c.frames[i, :6, :6].reshape(-1, 3).mean(0)  # objects stay in their lanes, off the corner
            assert np.abs(corner - RGB[background]).max() < 20
        reference = world.audio(c.start, 2.0)
        got = c.audio[: len(reference)]
        assert np.sqrt(np.mean((got - reference) ** 2)) < 0.05 + 0.2 * np.sqrt(np.mean(reference**2))


def test_a_policy_that_allows_nothing_refuses_a_world():
    from streams.policy import SourcePolicy, SourceRefused, admit

    with pytest.raises(SourceRefused, match="'world'"):
        admit({"type": "world"}, SourcePolicy())
