"""Memory over media time of a `benchmarks.soak_day` run, as a PNG (one line per process).

    python -m benchmarks.soak_plot docs/soak_day.jsonl docs/soak_day.png [--warmup-hours 2.4]

Each process's RSS is drawn relative to its value at the end of the warm-up (dashed line), so flat is a
horizontal line at 0 and 1% growth is visible whatever the process's size; the legend gives the absolute
MB at warm-up end. A second panel shows the KV-cache length and the largest position.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(path: Path) -> list[dict]:
    """The samples of a run as it went: one JSON object per line (the one taken after `malloc_trim` at
    the end left out)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if not r.get("trimmed")]


def relative_percent(samples: list[dict], process: str, warmup_media_s: float) -> list[float]:
    """RSS of `process` at each sample as % above its RSS at the first sample at or after the warm-up."""
    base = next(s["rss_mb"][process] for s in samples if s["media_s"] >= warmup_media_s)
    return [(s["rss_mb"][process] - base) / base * 100.0 for s in samples]


def plot(samples: list[dict], warmup_media_s: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [s["media_s"] / 3600.0 for s in samples]
    fig, (mem, pos) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, height_ratios=(2, 1))
    base = next(s for s in samples if s["media_s"] >= warmup_media_s)
    for p in samples[0]["rss_mb"]:
        mem.plot(hours, relative_percent(samples, p, warmup_media_s), label=f"{p} ({base['rss_mb'][p]:.0f} MB)")
    mem.axvline(warmup_media_s / 3600.0, color="grey", linestyle="--", linewidth=1)
    mem.axhspan(-1.0, 1.0, color="green", alpha=0.08, label="±1% of warm-up RSS")
    mem.set_ylabel("RSS vs warm-up end (%)")
    mem.legend(fontsize=8, loc="upper left")
    mem.set_title("RSS per process over media time (unpaced soak, tiny model)")
    pos.plot(hours, [s["cache_tokens"] for s in samples], ".", markersize=3, label="KV cache tokens")
    pos.plot(hours, [s["max_position"] for s in samples], ".", markersize=3, label="largest position")
    pos.set_xlabel("media time (hours)")
    pos.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jsonl", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--warmup-hours", type=float, default=None, help="default: a tenth of the run")
    args = parser.parse_args()
    samples = load(args.jsonl)
    warmup = (args.warmup_hours * 3600.0 if args.warmup_hours is not None else samples[-1]["media_s"] / 10)
    plot(samples, warmup, args.png)


if __name__ == "__main__":
    main()
