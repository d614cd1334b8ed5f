"""The day-of-media soak's arithmetic: growth after warm-up, the 1% flatness check, the plot's relative RSS."""

from __future__ import annotations

import json

import pytest

from benchmarks.soak_day import day_config, flatness, is_flat, table
from benchmarks.soak_plot import load, relative_percent


def _sample(media_s: float, model: float, source: float = 600.0) -> dict:
    return {"media_s": media_s, "rss_mb": {"source": source, "model": model}, "cache_tokens": 100,
            "max_position": 200, "chunks": int(media_s / 2), "dropped": 0, "lost": 0, "asked": 3, "answered": 3,
            "watch_events": 9}


SAMPLES = [_sample(0, 500.0), _sample(3600, 800.0), _sample(7200, 804.0), _sample(10800, 808.0, source=594.0)]


def test_growth_is_read_from_the_first_sample_after_the_warm_up_to_the_last():
    by = {g.process: g for g in flatness(SAMPLES, 3600.0)}
    model, source = by["model"], by["source"]
    assert (model.warm_mb, model.end_mb) == (800.0, 808.0)
    # 8 MB on 800 MB is 1%; over 3600 -> 10800 s of media, i.e. 2 hours: 4 MB per media hour
    assert model.percent == pytest.approx(1.0) and model.mb_per_media_hour == pytest.approx(4.0)
    assert source.percent == pytest.approx(-1.0) and source.mb_per_media_hour == pytest.approx(-3.0)


def test_the_warm_up_starts_at_the_first_sample_at_or_after_it():
    (model,) = [g for g in flatness(SAMPLES, 1.0) if g.process == "model"]
    assert model.warm_mb == 800.0 and model.mb_per_media_hour == pytest.approx(8.0 / (7200 / 3600))


def test_flat_means_no_process_grew_more_than_one_percent_and_shrinking_is_flat():
    assert is_flat(flatness(SAMPLES, 3600.0))  # model +1.00%, source -1.00%
    grown = SAMPLES[:-1] + [_sample(10800, 808.1)]  # +8.1 MB on 800: 1.0125%
    assert not is_flat(flatness(grown, 3600.0))
    assert is_flat(flatness(grown, 3600.0), tolerance_percent=1.02)


def test_growth_needs_two_samples_after_the_warm_up():
    with pytest.raises(ValueError, match="need two samples after the warm-up"):
        flatness(SAMPLES, 7201.0)


def test_table_names_every_process_and_the_counters():
    text = table(SAMPLES, 3600.0)
    assert "| model | 800.0 | 808.0 | +1.00 | +4.00 | - |" in text
    assert "| source | 600.0 | 594.0 | -1.00 | -3.00 | - |" in text
    assert "flat within 1%: yes" in text and "questions answered 3/3" in text and "largest position 200" in text


def test_the_sample_after_malloc_trim_is_shown_beside_the_curve_but_is_no_part_of_it():
    after_trim = {**_sample(10800, 790.0, source=580.0), "trimmed": True}
    text = table(SAMPLES + [after_trim], 3600.0)
    assert "| model | 800.0 | 808.0 | +1.00 | +4.00 | 790.0 |" in text
    assert "| source | 600.0 | 594.0 | -1.00 | -3.00 | 580.0 |" in text


def test_plot_rss_is_relative_to_the_warm_up_end(tmp_path):
    path = tmp_path / "run.jsonl"
    trimmed = {**_sample(10800, 1.0), "trimmed": True}
    path.write_text("".join(json.dumps(s) + "\n" for s in SAMPLES + [trimmed]))
    samples = load(path)
    assert relative_percent(samples, "model", 3600.0) == pytest.approx([-37.5, 0.0, 0.5, 1.0])


def test_the_soak_source_is_unpaced_and_long_enough_for_the_chunks_asked():
    source = day_config("m", 43_200, 160, 120, 60.0)["streams"][0]["source"]
    assert source["realtime"] is False and source["duration"] >= 43_200 * 2.0
    from streams.config import load_source_config

    assert load_source_config(source).policy == "block"  # unpaced: nothing is dropped, the source waits
