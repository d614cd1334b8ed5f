"""Every command block of the README's "Quick start" and "Using it" sections, run as the README writes it, so
the README cannot drift from the program.

The commands are read from README.md, not copied here. `test_every_readme_command_is_run_or_checked_here`
fails when a block gains, loses or changes a command this file does not know (update `SUBSTITUTED` or
`NOT_RUN` with it, and the README's command is then run as it now reads). Each documented `omnisift`
command's arguments must parse, and the files it names must exist. The slow tests run them on this
machine (no GPU, no weights), substituting only what must be, each said where it is done:

- `.venv/bin/omnisift` / `omnisift` -> this interpreter's `python -m pipeline.cli` (the same `main`);
- `--duration` shorter; `clip.mp4` generated in a scratch working folder (with `configs/` beside it);
- `omnisift run configs/rtsp.yaml`: the config with this test's loopback RTSP feed as the camera, no GPU
  asked for (there is none), a local Ray of 4 logical CPUs (the actors reserve 2.5; CI machines may have
  2 cores), and `--model tiny` (the 7B weights are not here);
- the hub is offline (`HF_HUB_OFFLINE=1`): a machine without weights must not start a 16 GB download.

Not run here, each with its reason in `NOT_RUN`: the installs (`tests/run.sh` runs `scripts/install.sh`
itself at the start of every CI run; running them here would replace the environment the tests run in),
training and evaluation on the user's dataset with the 7B (`tests/training/` runs the same commands on the
synthetic task), and the GPU-only section.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("Quick start", "Using it")

# documented command -> what this test runs instead, with what it substituted (checked in the slow tests)
SUBSTITUTED = {
    "bash scripts/install.sh": "syntax check only (see NOT_RUN's reason for the installs)",
    ".venv/bin/omnisift demo --duration 20": "python -m pipeline.cli demo --duration 5",
    'omnisift infer clip.mp4 -q "What is the person holding?" --model Qwen/Qwen2.5-Omni-7B --selector '
    "omnisift_vgas.safetensors --retention 0.25": "clip.mp4 generated; the hub offline",
    "omnisift run configs/rtsp.yaml --duration 3600": "the loopback RTSP feed, no GPUs, --model tiny, --duration 12",
    'omnisift ask "Is the door open?" --stream door': "as written, while the run above runs",
    "curl -s 127.0.0.1:9464/metrics | grep omnisift_": "as written, while the run above runs",
}
NOT_RUN = {
    "bash tests/run.sh": "it is the test command itself (installs a fresh .venv, then runs this suite)",
    "omnisift train configs/train.yaml": "the user's dataset (data/train.jsonl) and the 7B; tests/training runs "
                                         "`omnisift train` on the synthetic task",
    "omnisift eval configs/eval.yaml --limit 50": "the user's WorldSense data and a trained selector; "
                                                  "tests/training runs `omnisift eval` on the synthetic task",
    "bash scripts/install.sh --gpu": "needs nvcc and a GPU (the README's section says so)",
    "omnisift eval configs/eval-release.yaml": "needs a GPU, the 7B and WorldSense",
    "omnisift eval configs/eval-release.yaml --out-dir runs/eval-videomme": "needs a GPU, the 7B and VideoMME",
}


def readme_commands(text: str | None = None) -> list[str]:
    """The commands of every ```bash block of the README's SECTIONS (a level-2 heading to the next),
    comments dropped, `&&` chains split, in order."""
    text = (ROOT / "README.md").read_text() if text is None else text
    commands = []
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        if not section.startswith(SECTIONS):
            continue
        for block in re.findall(r"^```bash\n(.*?)^```", section, flags=re.M | re.S):
            for line in re.sub(r"\s*\\\n\s*", " ", block).splitlines():
                line = re.sub(r"\s+#\s.*$", "", line).strip()
                commands += [part.strip() for part in line.split(" && ") if part.strip()]
    return commands


def test_every_readme_command_is_run_or_checked_here():
    from pipeline.cli import build_parser

    commands = readme_commands()
    assert len(commands) >= 10
    assert sorted(commands) == sorted({**SUBSTITUTED, **NOT_RUN}), (
        "the README's commands changed: run the new ones here (SUBSTITUTED) or say why not (NOT_RUN)")
    parser = build_parser()
    for command in commands:
        argv = shlex.split(command.split("|")[0])
        if argv[0] in ("omnisift", ".venv/bin/omnisift"):
            args = parser.parse_args(argv[1:])  # a flag the CLI no longer takes fails here
            for value in vars(args).values():
                if isinstance(value, str | Path) and str(value).startswith("configs/"):
                    assert (ROOT / value).is_file(), f"{command}: {value} does not exist"
        elif argv[0] == "bash":
            assert (ROOT / argv[1]).is_file(), f"{command}: {argv[1]} does not exist"


def test_the_readme_parser_finds_blocks_only_in_its_sections():
    text = ("# T\n## Quick start\n```bash\na --x  # note\nb && c \\\n  --y\n```\n### Sub\n```bash\nd\n```\n"
            "## Install\n```bash\nnot-this\n```\n## Using it\n```python\nnot-python\n```\n```bash\ne | f\n```\n")
    assert readme_commands(text) == ["a --x", "b", "c --y", "d", "e | f"]


# ---- the slow part: running them ----------------------------------------------------------------------------


def _cli(command: str) -> list[str]:
    """A documented `omnisift ...` command as this interpreter runs it."""
    argv = shlex.split(command)
    assert argv[0] in ("omnisift", ".venv/bin/omnisift"), command
    return [sys.executable, "-m", "pipeline.cli", *argv[1:]]


def _replace(argv: list[str], flag: str, value: str) -> list[str]:
    i = argv.index(flag)
    return [*argv[:i + 1], value, *argv[i + 2:]]


@pytest.fixture
def workdir(tmp_path, ray_tmp):
    """A scratch working folder with the repository's configs beside it, and the environment the commands
    run in (offline hub, this checkout's code, a Ray temp folder and runtime folder of the test's own)."""
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "RAY_TMPDIR": ray_tmp,
           "OMNISIFT_RUNTIME_DIR": str(tmp_path / "runtime"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return tmp_path, env


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_start_runs_as_written(workdir):
    cwd, env = workdir
    install, demo = readme_commands()[:2]  # the README chains them with &&
    assert install == "bash scripts/install.sh"
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "install.sh")], check=True, timeout=30)
    assert demo == ".venv/bin/omnisift demo --duration 20"
    out = subprocess.run(_replace(_cli(demo), "--duration", "5"), cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "TINY RANDOM model" in out.stdout and "dashboard: http://127.0.0.1:8321/" in out.stdout
    assert any(ln.startswith("[demo] chunk") for ln in out.stdout.splitlines()), out.stdout
    assert (cwd / "omnisift-data" / "history.sqlite3").is_file()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_infer_runs_as_written(workdir):
    from tests.pipeline.media import write_clip

    cwd, env = workdir
    infer = next(c for c in readme_commands() if c.startswith("omnisift infer "))
    write_clip(cwd / "clip.mp4", seconds=4.0)
    out = subprocess.run(_cli(infer), cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Qwen/Qwen2.5-Omni-7B weights are not on this machine: running the TINY RANDOM model." in out.stderr
    assert re.match(r"\[\d+ chunks, .* kept [\d.]+% of audio\+video\]$", out.stderr.splitlines()[-1]), out.stderr
    assert out.stdout.strip()  # the answer


@pytest.mark.slow
@pytest.mark.rtsp
@pytest.mark.timeout(240)
def test_live_streams_run_ask_and_metrics_as_written(workdir, rtsp_url):
    cwd, env = workdir
    commands = readme_commands()
    run = next(c for c in commands if c.startswith("omnisift run "))
    ask = next(c for c in commands if c.startswith("omnisift ask "))
    metrics = next(c for c in commands if c.startswith("curl "))
    config = yaml.safe_load((ROOT / "configs" / "rtsp.yaml").read_text())
    config["streams"][0]["source"]["url"] = rtsp_url  # the camera: this test's loopback feed
    for spec in config["resources"].values():
        spec.pop("num_gpus", None)  # this machine has no GPU
    config["ray"]["num_cpus"] = 4  # and may have fewer cores than the 2.5 CPUs the actors reserve (Ray counts them)
    (cwd / "rtsp.yaml").write_text(yaml.safe_dump(config))
    argv = _replace(_cli(run), "--duration", "12")
    argv[argv.index("configs/rtsp.yaml")] = "rtsp.yaml"
    errors = cwd / "run-stderr.txt"
    with open(errors, "w") as err_file:
        proc = subprocess.Popen([*argv, "--model", "tiny"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=err_file, text=True)
        try:
            lines = []
            for line in proc.stdout:  # bounded by --duration and the test's timeout
                lines.append(line.rstrip("\n"))
                if line.startswith("[door] chunk"):
                    break
            asked = subprocess.run(_cli(ask), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
            scraped = subprocess.run(["bash", "-c", metrics], cwd=cwd, env=env, capture_output=True, text=True,
                                     timeout=60)
            lines += proc.communicate(timeout=200)[0].splitlines()
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, errors.read_text()[-3000:]
    assert "rep: tcp://127.0.0.1:5561" in lines and "metrics: http://127.0.0.1:9464/metrics" in lines, lines
    assert asked.returncode == 0 and asked.stderr.startswith("[door] media "), asked.stderr
    assert scraped.returncode == 0 and "omnisift_" in scraped.stdout
    assert all("omnisift_" in ln for ln in scraped.stdout.splitlines())
    assert any(ln.startswith("[door] stopped: ") for ln in lines), lines
