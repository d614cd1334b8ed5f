"""`omnisift` command line: a thin layer over library functions, one module per command.

    omnisift infer VIDEO -q QUESTION [--model ID_OR_PATH] [--retention R | --rho-video V --rho-audio A]
    omnisift demo [--duration SECONDS]
    omnisift run CONFIG [--duration SECONDS] [--model ID_OR_PATH]
    omnisift ask QUESTION [--stream NAME] [--endpoint tcp://127.0.0.1:5561]

Bad input (a missing, undecodable or video-less file, a bad ratio or config) prints one line and exits 2.
May import anything in the project; nothing imports it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

EXIT_BAD_INPUT = 2

# name -> module beside this one with add_arguments(parser), run(args) and HELP
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnisift", description="Live audio-video QA with OmniSIFT compression")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_transformers()
    from streams.errors import StreamError

    try:
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except (ValueError, OSError, StreamError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

