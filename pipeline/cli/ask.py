"""`omnisift ask QUESTION`: ask a running pipeline (`omnisift run`, `omnisift demo`) over its ZeroMQ REP socket.

Without `--endpoint` it asks the pipeline running on this machine (`pipeline.cli.running`: they announce
their endpoints); with none announced (one in a container, say), `zmq.rep`'s default endpoint if something
answers there; else it says in one line where to point it. Before the question, a `streams` request with a
short timeout checks that something answers there, so a wrong endpoint fails in seconds, not after the
question's timeout. Imports no torch and no Ray (`LIGHT`): a question costs the ZeroMQ round trip.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "ask a running pipeline a question over ZeroMQ"
LIGHT = True  # loads no model library
PROBE_TIMEOUT = 3.0  # seconds for a running pipeline to answer `streams` (it answers at once)
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5561"  # zmq.rep's default in a pipeline config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question")
    parser.add_argument("--stream", default=None, help="stream name (needed when the pipeline runs several)")
    parser.add_argument("--endpoint", default=None,
                        help="the pipeline's zmq.rep endpoint (its `rep:` line; default: the one running here)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--server-key", default=None, help="server public certificate (CURVE)")
    parser.add_argument("--client-key", default=None, help="client secret certificate (CURVE)")
    parser.add_argument("--json", action="store_true", help="print the whole reply as JSON")


def run(args: argparse.Namespace) -> int:
    from pipeline.cli.running import NotRunning, find_rep
    from pipeline.serve.zmq_api import encode_request, request

    message = {"question": args.question, "stream": args.stream, "timeout": args.timeout}
    if args.max_new_tokens is not None:
        message["max_new_tokens"] = args.max_new_tokens
    encode_request(message)  # a question too large is refused before looking for a pipeline
    endpoint, not_found = args.endpoint, None
    if endpoint is None:
        try:
            endpoint = find_rep(args.stream)
        except NotRunning as err:
            endpoint, not_found = DEFAULT_ENDPOINT, err
    keys = {"server_public_file": args.server_key, "client_secret_file": args.client_key}
    probe = min(PROBE_TIMEOUT, args.timeout)
    try:
        request(endpoint, {"command": "streams"}, timeout=probe, **keys)
    except TimeoutError:
        if not_found is not None:
            raise NotRunning(f"{not_found}, and nothing answers at {endpoint} (zmq.rep's default) within {probe:g}s: "
                             "start one, or give the `rep:` endpoint it printed with --endpoint tcp://HOST:PORT"
                             ) from None
        raise TimeoutError(f"no reply from {endpoint} within {probe:g}s: is `omnisift run` or `omnisift demo` "
                           "running there? Give the `rep:` endpoint it printed with --endpoint") from None
    reply = request(endpoint, message, timeout=args.timeout + 5.0, **keys)
    if not reply.get("ok"):
        raise ValueError(reply.get("error", "the pipeline refused the request"))
    if args.json:
        print(json.dumps(reply["answer"]))
        return 0
    a = reply["answer"]
    print(a["text"])
    media = "-" if a["media_time"] is None else f"{a['media_time']:.1f}s"
    print(f"[{a['stream']}] media {media}, lag {a['lag']:.2f}s, {a['latency']:.2f}s to answer", file=sys.stderr)
    return 0
