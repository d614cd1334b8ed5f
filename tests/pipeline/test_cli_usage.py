"""The command line as a new user meets it: every refused argument is one `error:` line (exit 2); a long
command's first line comes before anything slow is imported; `omnisift ask` finds the running pipeline (or
says where to point it) at once and loads no torch; ports in use and places that cannot be written are
refused before Ray or a model starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml

from pipeline.cli import main
from pipeline.cli.running import announced, find_rep, running

HEAVY = ("torch", "ray", "transformers")


@pytest.mark.parametrize(("argv", "says"), [
    ([], "error: omnisift: the following arguments are required: command"),
    (["nope"], "error: omnisift: argument command: invalid choice: 'nope'"),
    (["infer"], "error: omnisift infer: the following arguments are required: video, -q/--question"),
    (["infer", "a.mp4", "-q", "x", "--retention", "1.5"],
     "error: omnisift infer: argument --retention: must be a fraction in [0, 1], got 1.5"),
    (["infer", "a.mp4", "-q", "x", "--retention", "0.3", "--rho-video", "0.5"],
     "error: omnisift infer: argument --rho-video: not allowed with argument --retention"),
    (["infer", "a.mp4", "-q", "x", "--max-new-tokens", "many"],
     "error: omnisift infer: argument --max-new-tokens: invalid int value: 'many'"),
    (["infer", "a.mp4", "-q", "x", "--bogus"], "error: omnisift: unrecognized arguments: --bogus"),
    (["demo", "--duration", "soon"], "error: omnisift demo: argument --duration: invalid float value: 'soon'"),
    (["run"], "error: omnisift run: the following arguments are required: config"),
    (["ask"], "error: omnisift ask: the following arguments are required: question"),
    (["bench", "--chunks", "x"], "error: omnisift bench: argument --chunks: invalid int value: 'x'"),
    (["viz", "v.mp4", "--rho-video", "2"], "error: omnisift viz: argument --rho-video: must be a fraction in [0, 1]"),
    (["train"], "error: omnisift train: the following arguments are required: config"),
    (["eval", "c.yaml", "--limit", "x"], "error: omnisift eval: argument --limit: invalid int value: 'x'"),
])
def test_every_refused_argument_is_one_error_line_and_exit_2(capsys, argv, says):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(says) and err.count("\n") == 1, err
    assert "usage:" not in err


def test_the_first_line_of_each_long_command_needs_no_heavy_import(tmp_path):
    """What `main` prints first (the module's `first_line`) is reached by parsing alone: nothing of torch,
    Ray or transformers is loaded by then, so it appears within a second of the start."""
    code = f"""
import importlib, json, sys
from pipeline.cli import COMMANDS, build_parser
lines = {{}}
for argv in (["demo"], ["demo", "--no-ray"], ["run", "c.yaml"], ["bench"],
             ["viz", "a.mp4"], ["train", "c.yaml"], ["eval", "c.yaml"]):
    args = build_parser().parse_args(argv)
    lines[" ".join(argv)] = importlib.import_module(COMMANDS[args.command]).first_line(args)
print(json.dumps({{"lines": lines, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.stdout)
    assert result["heavy"] == []
    for argv, line in result["lines"].items():
        assert line.startswith(f"omnisift {argv.split()[0]}"), (argv, line)


class FakeRep:
    """A pipeline's REP socket as `omnisift ask` meets it: answers `streams`, then one question."""

    def __init__(self) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.requests: list[dict] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for _ in range(2):
            if not self.sock.poll(30_000):
                return
            request = json.loads(self.sock.recv())
            self.requests.append(request)
            if request.get("command") == "streams":
                self.sock.send_json({"ok": True, "streams": {"cam": "running"}})
            else:
                self.sock.send_json({"ok": True, "answer": {
                    "type": "answer", "stream": "cam", "question": request["question"], "text": "a red cup",
                    "media_time": 4.0, "lag": 0.1, "latency": 0.2, "chunks_in_context": 2}})

    def close(self) -> None:
        self.thread.join(timeout=35)
        self.sock.close(0)
        self.ctx.term()


def test_ask_without_endpoint_asks_the_pipeline_running_here(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMNISIFT_RUNTIME_DIR", str(tmp_path))
    rep = FakeRep()
    try:
        with announced("run", {"rep": rep.endpoint, "pub": "tcp://127.0.0.1:1"}, ["cam"], tmp_path) as path:
            assert json.loads(path.read_text())["endpoints"]["rep"] == rep.endpoint
            assert main(["ask", "What is held?", "--timeout", "10"]) == 0
        assert not path.exists()
    finally:
        rep.close()
    out, err = capsys.readouterr()
    assert out == "a red cup\n" and err == "[cam] media 4.0s, lag 0.10s, 0.20s to answer\n"
    assert rep.requests == [{"command": "streams"}, {"question": "What is held?", "stream": None, "timeout": 10.0}]


def test_ask_with_no_pipeline_running_says_where_to_point_it_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMNISIFT_RUNTIME_DIR", str(tmp_path))
    with socket.socket() as s:  # the default endpoint: here, one where nothing listens
        s.bind(("127.0.0.1", 0))
        nothing = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setattr("pipeline.cli.ask.DEFAULT_ENDPOINT", nothing)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"{dead.pid}.json").write_text(json.dumps({  # left by a pipeline that was killed
        "pid": dead.pid, "command": "run", "started": 0.0, "streams": ["cam"], "endpoints": {"rep": "tcp://x:1"}}))
    started = time.monotonic()
    assert main(["ask", "Is the door open?"]) == 2
    assert time.monotonic() - started < 10  # not the question's 120 s timeout
    err = capsys.readouterr().err
    assert err == (f"error: no running omnisift run or demo found (none has announced itself in {tmp_path}), and "
                   f"nothing answers at {nothing} (zmq.rep's default) within 3s: start one, or give the `rep:` "
                   "endpoint it printed with --endpoint tcp://HOST:PORT\n")
    assert not list(tmp_path.glob("*.json")), "the stale file was not removed"


def test_ask_with_none_announced_asks_the_default_endpoint_if_it_answers(tmp_path, monkeypatch, capsys):
    """A pipeline this machine cannot see announce itself (in a container, its REP published on the default
    port) is still asked by default."""
    monkeypatch.setenv("OMNISIFT_RUNTIME_DIR", str(tmp_path))
    rep = FakeRep()
    monkeypatch.setattr("pipeline.cli.ask.DEFAULT_ENDPOINT", rep.endpoint)
    try:
        assert main(["ask", "What is held?", "--timeout", "10"]) == 0
    finally:
        rep.close()
    assert capsys.readouterr().out == "a red cup\n"


def test_ask_with_several_pipelines_running_names_them(tmp_path):
    with announced("run", {"rep": "tcp://127.0.0.1:7001"}, ["door"], tmp_path), \
            announced("demo", {"rep": "tcp://127.0.0.1:7002"}, ["demo"], tmp_path / "other"):
        assert find_rep("door", tmp_path) == "tcp://127.0.0.1:7001"
        assert [r["command"] for r in running(tmp_path)] == ["run"]
    # two records (the same process may not announce twice in one folder, so write the second by hand)
    for pid, name in ((os.getpid(), "door"), (os.getppid(), "yard")):
        (tmp_path / f"{pid}.json").write_text(json.dumps({"pid": pid, "command": "run", "started": float(pid),
                                                          "streams": [name], "endpoints": {"rep": f"tcp://h:{pid}"}}))
    assert find_rep("yard", tmp_path) == f"tcp://h:{os.getppid()}"
    with pytest.raises(ValueError, match=r"^2 pipelines are running, choose one with --endpoint: pid "):
        find_rep(None, tmp_path)


def test_ask_at_an_endpoint_where_nothing_answers_fails_in_seconds(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    assert main(["ask", "hello?", "--endpoint", f"tcp://127.0.0.1:{port}"]) == 2
    assert time.monotonic() - started < 10
    assert capsys.readouterr().err == (f"error: no reply from tcp://127.0.0.1:{port} within 3s: is `omnisift run` or "
                                       "`omnisift demo` running there? Give the `rep:` endpoint it printed with "
                                       "--endpoint\n")


def test_ask_loads_neither_torch_nor_ray():
    rep = FakeRep()
    code = (f"import sys\nfrom pipeline.cli import main\nrc = main(['ask', 'q', '--endpoint', {rep.endpoint!r}])\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])\nsys.exit(rc)")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        rep.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["a red cup", "[]"]


@pytest.fixture
def busy_port():
    """A port something listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _config(tmp_path, **extra) -> str:
    config = {"streams": [{"name": "cam", "source": {"type": "synthetic", "duration": 2.0}}],
              "model": {"path": str(tmp_path / "no-model")},
              "zmq": {"pub": "tcp://127.0.0.1:*", "rep": "tcp://127.0.0.1:*"}, "metrics": {"port": 0},
              "http": {"port": 0}, "history": {"path": str(tmp_path / "h.sqlite3")}, "clips": {"dir": None}, **extra}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize("case", ["http", "metrics", "zmq", "history", "clips"])
def test_run_refuses_a_port_in_use_or_an_unwritable_place_before_ray_starts(tmp_path, capsys, busy_port, case):
    import ray

    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where a folder is needed: no one can write below it, root included
    extra, says = {
        "http": ({"http": {"port": busy_port}}, f"error: http.port {busy_port} on 127.0.0.1 is already in use"),
        "metrics": ({"metrics": {"port": busy_port}},
                    f"error: metrics.port {busy_port} on 127.0.0.1 is already in use"),
        "zmq": ({"zmq": {"pub": "tcp://127.0.0.1:*", "rep": f"tcp://127.0.0.1:{busy_port}"}},
                f"error: zmq.rep {busy_port} on 127.0.0.1 is already in use"),
        "history": ({"history": {"path": str(blocker / "h.sqlite3")}},
                    f"error: history.path {blocker / 'h.sqlite3'}: cannot write there ({blocker} is a file, "
                    "not a folder)"),
        "clips": ({"clips": {"dir": str(blocker / "clips")}},
                  f"error: clips.dir {blocker / 'clips'}: cannot write there ({blocker} is a file, not a folder)"),
    }[case]
    assert main(["run", _config(tmp_path, **extra), "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("omnisift run ") and err.splitlines()[1].startswith(says), err
    assert len(err.splitlines()) == 2
    assert not ray.is_initialized()


def test_demo_refuses_its_port_in_use_before_the_model_or_ray(tmp_path, capsys, busy_port):
    import ray

    assert main(["demo", "--http-port", str(busy_port), "--data", str(tmp_path), "--model", "no-such/model"]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no tiny-model banner: the model was not even resolved
    assert err.splitlines()[1].startswith(f"error: http.port {busy_port} on 127.0.0.1 is already in use")
    assert not ray.is_initialized()
