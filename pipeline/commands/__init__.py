"""One module per `omnisift` subcommand, each with `add_arguments(parser)` and `run(args) -> int`.

`pipeline.cli` lists them in `COMMANDS`; a new command is a new module plus one line there.
"""
