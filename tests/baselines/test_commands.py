"""`omnisift bench` produces its table on a tiny configuration; `omnisift viz` draws the expected overlays."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from pipeline.cli import main
from pipeline.viz import CELL, KEPT, kept_audio, kept_cells, visualize
from tests.pipeline.media import write_clip


def test_bench_writes_the_side_by_side_table_json_and_plots(tmp_path, capsys):
    methods = ["full", "random", "omnisift", "stvp", "vgas", "dycoke", "timechat", "vidcom2", "omnizip"]
    assert main(["bench", "--chunks", "2", "--size", "112", "--window", "4", "--reps", "1", "--tokens-per-frame",
                 "16", "--tower-layers", "1", "--retentions", "0.35", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "baselines.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [r.split("|")[1].strip() for r in rows] == methods
    out = capsys.readouterr().out
    assert table in out  # printed row by row as each finished: the same table
    full = next(r for r in rows if r.split("|")[1].strip() == "full")
    assert full.split("|")[2].strip() == "100%"  # full keeps everything, whatever the retention beside it
    assert {r.split("|")[2].strip() for r in rows if r is not full} == {"35%"}
    results = json.loads((tmp_path / "baselines.json").read_text())
    assert {r["method"] for r in results["rows"]} == set(methods)
    for r in results["rows"]:
        assert r["cost_7b"]["video"][1] == 32 and r["live"]["rtf"] > 0 and len(r["live"]["cache_tokens"]) == 2
    for png in ("latency_vs_retention.png", "memory_vs_time.png"):
        assert Image.open(tmp_path / png).size[0] > 100


def test_bench_prints_each_row_as_it_finishes_and_ctrl_c_writes_the_rows_done(tmp_path, capsys, monkeypatch):
    import pipeline.offline.comparison as comparison

    real, seen = comparison.live_stream, []

    def live_stream(name, *args):
        seen.append((name, capsys.readouterr().out))  # what was printed when this row started
        if len(seen) == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third row
        return real(name, *args)

    monkeypatch.setattr(comparison, "live_stream", live_stream)
    assert main(["bench", "--methods", "full", "random", "omnisift", "--chunks", "2", "--size", "112", "--window",
                 "4", "--reps", "1", "--tokens-per-frame", "16", "--retentions", "0.35", "--out", str(tmp_path)]) == 130
    out = capsys.readouterr().out
    assert [name for name, _ in seen] == ["full", "random", "omnisift"]
    assert seen[0][1].splitlines()[-1].startswith("|---")  # the table's head came first
    assert seen[1][1].startswith("| full | 100% |") and seen[2][1].startswith("| random | 35% |")
    written = [str(tmp_path / name) for name in ("baselines.json", "baselines.md", "latency_vs_retention.png",
                                                  "memory_vs_time.png")]
    assert out == f"interrupted: 2 of 3 rows finished, written to {', '.join(written)}\n"
    assert [r["method"] for r in json.loads((tmp_path / "baselines.json").read_text())["rows"]] == ["full", "random"]


def test_viz_interrupted_says_nothing_was_written(tmp_path, capsys, monkeypatch):
    import pipeline.viz

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.viz, "visualize", interrupted)
    clip = write_clip(tmp_path / "clip.mp4", seconds=2.0)
    out = tmp_path / "kept.png"
    assert main(["viz", str(clip), "--model", "tiny", "-o", str(out)]) == 130
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"interrupted: nothing written ({out} is written once every compressor has run)")
    assert not out.exists()


def test_bench_regenerates_its_section_of_benchmarks_md_and_keeps_the_rest(tmp_path):
    from pipeline.offline.comparison import BEGIN_MARK, END_MARK, update_benchmarks_md

    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nkept above\n")
    update_benchmarks_md(md, "| old |\n", "omnisift bench --old")
    md.write_text(md.read_text() + "\nkept below\n")
    update_benchmarks_md(md, "| new |\n", "omnisift bench --new")
    text = md.read_text()
    assert text.count(BEGIN_MARK) == 1 and text.count(END_MARK) == 1
    assert "| new |" in text and "| old |" not in text and "--new" in text
    assert text.index("kept above") < text.index(BEGIN_MARK) < text.index(END_MARK) < text.index("kept below")


def test_bench_rejects_an_unknown_method(tmp_path, capsys):
    assert main(["bench", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown compressor" in capsys.readouterr().err


def test_viz_overlay_is_exactly_over_kept_patches_and_kept_audio_tokens(tmp_path, tiny_model_path):
    clip = write_clip(tmp_path / "clip.mp4", seconds=4.0)  # grey gradient + tone: no pure green in it
    out = tmp_path / "kept.png"
    assert main(["viz", str(clip), "--model", str(tiny_model_path), "--methods", "dycoke", "omnizip",
                 "--chunks", "2", "-o", str(out)]) == 0
    image, layout = visualize(str(clip), ["dycoke", "omnizip"], str(tiny_model_path), 2, 0.8, 0.3, 224 * 224)
    saved = np.asarray(Image.open(out).convert("RGB"))
    assert np.array_equal(saved, np.asarray(image))  # the command wrote this picture
    rows, cols = layout["grid"]
    green = np.all(saved == KEPT, axis=-1)
    legend_y, legend = layout["legend"]  # under the rows, the legend says what the grey waveform band and bar are
    assert all(y + h <= legend_y for (_, y, _, h, _) in layout["bars"].values())
    assert "waveform" in legend[1] and "green = kept" in legend[1] and "dimmed" in legend[0]
    assert saved[legend_y:].min() < 100 and not green[legend_y:].any()  # drawn text, no false "kept" pixels
    total_kept = 0
    for tile in layout["tiles"]:
        comp = layout["kept"][tile.method][tile.chunk]
        cells = kept_cells(comp, layout["steps"], rows, cols)[tile.step]
        for r in range(rows):
            for c in range(cols):
                y, x = tile.y + r * CELL, tile.x + c * CELL
                border = np.concatenate([green[y, x:x + CELL], green[y + CELL - 1, x:x + CELL],
                                         green[y:y + CELL, x], green[y:y + CELL, x + CELL - 1]])
                assert border.all() == bool(cells[r, c]) and (border.any() == bool(cells[r, c]))
                assert not green[y + 1:y + CELL - 1, x + 1:x + CELL - 1].any()  # the frame shows through
        total_kept += int(cells.sum())
    assert total_kept == sum(c.video_after for chunks in layout["kept"].values() for c in chunks)
    for method, (x0, y0, width, height, mask) in layout["bars"].items():
        expected = np.concatenate([kept_audio(c, 50) for c in layout["kept"][method]])
        assert np.array_equal(mask, expected)
        for k in range(layout["tokens"]):
            xa = x0 + k * width // layout["tokens"]
            assert green[y0 + height // 2, xa] == expected[k]
