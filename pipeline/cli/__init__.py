"""`omnisift` command line: a thin layer over library functions, one module per command.

    omnisift infer VIDEO -q QUESTION [--model ID_OR_PATH|tiny] [--retention R | --rho-video V --rho-audio A]
    omnisift demo [--duration SECONDS]
    omnisift run CONFIG [--duration SECONDS] [--model ID_OR_PATH]
    omnisift ask QUESTION [--stream NAME] [--endpoint tcp://127.0.0.1:5561]

Bad input (a bad argument, a missing, undecodable or video-less file, a bad ratio or config) prints one
`error:` line and exits 2. A command that takes a while says what it is doing first: its module's
`first_line(args)`, printed on stderr before anything slow is imported. Ctrl-C exits 130 with one line.
May import anything in the project; nothing imports it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from streams.errors import one_line

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# name -> module beside this one with add_arguments(parser), run(args) and HELP; optionally
# first_line(args) (the line printed at once) and LIGHT = True (loads no model library: transformers is
# not quieted, so not imported, for it)
COMMANDS = {
    "infer": "pipeline.cli.infer",
    "demo": "pipeline.cli.demo",
    "train": "pipeline.cli.train",
    "eval": "pipeline.cli.eval",
    "run": "pipeline.cli.run",
    "ask": "pipeline.cli.ask",
    "bench": "pipeline.cli.bench",
    "viz": "pipeline.cli.viz",
}


class UsageError(ValueError):
    """A command line argparse refuses; `main` prints it as one `error:` line (not argparse's usage block)."""


class Parser(argparse.ArgumentParser):
    """argparse, with a refused argument raised as `UsageError` naming the command and where its help is.
    Flags are taken whole, never by a prefix (`--stream` is not `--stream-name`): a command written today
    (the README's included) cannot silently bind to another flag after a rename."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse calls it for any refused argument
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="omnisift", description="Live audio-video QA with OmniSIFT compression")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    command = importlib.import_module(COMMANDS[args.command])
    if hasattr(command, "first_line"):
        print(command.first_line(args), file=sys.stderr, flush=True)  # stdout is for results (infer's answer)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(command, "LIGHT", False):
        _quiet_transformers()
    from streams.errors import StreamError

    try:
        return command.run(args)
    except (ValueError, OSError, StreamError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"omnisift {args.command}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
