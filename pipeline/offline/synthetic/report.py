"""The synthetic task's results as a markdown table and learning curves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.offline.synthetic.clips import PITCHES, RATIOS


@dataclass
class SeedResult:
    """What one seed measured (see `report.summary_table`)."""

    seed: int
    full: dict
    random: dict
    untrained: dict
    trained: dict
    backbone_loss: list[float]
    backbone_val: list  # (step, full-token accuracy on the held-out training clips)
    selector_history: list
    projection_check: float  # max |tower rerun - features used|, on one test clip
    seconds: float
    chosen: int = 0  # the selector init picked on the held-out training clips
    inits: list = None  # per init: accuracy on the held-out training clips (before/after), and on test
    untrained_mean: dict = None  # the untrained selector on test, mean over the inits
    init_histories: list = None  # selector loss curve of every init


def sd(xs: list[float]) -> float:
    """Sample standard deviation (0 for a single value)."""
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def smooth(ys: list[float], w: int = 10) -> list[float]:
    """Running mean over the last `w` values."""
    return [float(np.mean(ys[max(0, i - w + 1):i + 1])) for i in range(len(ys))]


def summary_table(results: list[SeedResult]) -> str:
    k = len(results[0].inits)
    rows = [("| seed | backbone steps (held-out train acc) | full tokens | random audio @25% | "
             f"untrained VGAS @25%: chosen init / mean of {k} | trained + selected VGAS @25% | trained - random | "
             "kept fraction | beep kept: random / untrained (chosen) / trained | chosen init (held-out train acc "
             "after training, per init) |"),
            "|---|---|---|---|---|---|---|---|---|---|"]
    gains = [r.trained["accuracy"] - r.random["accuracy"] for r in results]
    for r, g in zip(results, gains, strict=True):
        val = f" ({r.backbone_val[-1][1]:.2f})" if r.backbone_val else ""
        vals = " / ".join(f"{i['val_trained']['accuracy']:.2f}" for i in r.inits)
        rows.append(f"| {r.seed} | {len(r.backbone_loss)}{val} | {r.full['accuracy']:.3f} | "
                    f"{r.random['accuracy']:.3f} | {r.untrained['accuracy']:.3f} / "
                    f"{r.untrained_mean['accuracy']:.3f} | {r.trained['accuracy']:.3f} | "
                    f"{g:+.3f} | "
                    f"{r.random['retention']:.1%} / {r.untrained['retention']:.1%} / {r.trained['retention']:.1%} | "
                    f"{r.random['beep_kept']:.2f} / {r.untrained['beep_kept']:.2f} / {r.trained['beep_kept']:.2f} | "
                    f"{r.chosen} ({vals}) |")
    def ms(key: str, field: str, digits: int = 3) -> str:
        values = [getattr(r, key)[field] for r in results]
        return f"{np.mean(values):.{digits}f} ± {sd(values):.{digits}f}"

    def ms2(key: str) -> str:
        return ms(key, "beep_kept", 2)
    steps = [len(r.backbone_loss) for r in results]
    rows.append(f"| mean ± sd | {np.mean(steps):.0f} | {ms('full', 'accuracy')} | {ms('random', 'accuracy')} | "
                f"{ms('untrained', 'accuracy')} / {ms('untrained_mean', 'accuracy')} | {ms('trained', 'accuracy')} | "
                f"{np.mean(gains):+.3f} ± {sd(gains):.3f} | "
                f"{np.mean([r.trained['retention'] for r in results]):.1%} | "
                f"{ms2('random')} / {ms2('untrained')} / {ms2('trained')} | |")
    rows.append("")
    rows.append(f"trained - random accuracy per seed: {', '.join(f'{g:+.3f}' for g in gains)} "
                f"(mean {np.mean(gains):+.3f}, sd {sd(gains):.3f}, min {min(gains):+.3f}; "
                f"trained > random on {sum(g > 0 for g in gains)} of {len(gains)} seeds)")
    rows.append("")
    rows.append("Every init on the test clips (reported only; the choice used the held-out training clips):")
    rows.append("")
    rows.append("| seed | init | held-out train acc: untrained -> trained | test acc: untrained -> trained | "
                "test beep kept: untrained -> trained |")
    rows.append("|---|---|---|---|---|")
    for r in results:
        for i in r.inits:
            mark = " (chosen)" if i["init"] == r.chosen else ""
            rows.append(f"| {r.seed} | {i['init']}{mark} | {i['val_untrained']['accuracy']:.3f} -> "
                        f"{i['val_trained']['accuracy']:.3f} | {i['test_untrained']['accuracy']:.3f} -> "
                        f"{i['test_trained']['accuracy']:.3f} | {i['test_untrained']['beep_kept']:.2f} -> "
                        f"{i['test_trained']['beep_kept']:.2f} |")
    return "\n".join(rows)


def plot_inits(histories: list, chosen: int, path: Path, seed: int) -> None:
    """Selector loss (running mean) of every init of one seed; the chosen one drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    w = 10
    for j, h in enumerate(histories):
        ys = smooth([loss for _, loss in h], w)
        ax.plot(ys, lw=2.2 if j == chosen else 1, alpha=1 if j == chosen else 0.6,
                label=f"init {j}" + (" (chosen on held-out train clips)" if j == chosen else ""))
    ax.set_xlabel("micro-batch")
    ax.set_ylabel(f"answer loss (running mean {w})")
    ax.set_title(f"VGAS training, seed {seed}, {len(histories)} inits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_all(results: list[SeedResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    w = 10
    for r in results:
        axes[0].plot(smooth(r.backbone_loss), label=f"seed {r.seed}")
        axes[1].plot(smooth([loss for _, loss in r.selector_history]), label=f"seed {r.seed}")
    axes[0].axhline(np.log(len(PITCHES)) / 2, color="grey", ls=":", lw=1, label="chance")
    axes[0].set_title("1. backbone + audio projection, all tokens")
    axes[1].set_title(f"2. VGAS @{RATIOS.rho_video}/{RATIOS.rho_audio}, chosen init")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel(f"answer loss (running mean {w})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
