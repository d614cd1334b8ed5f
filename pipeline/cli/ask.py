"""`omnisift ask QUESTION`: ask a running pipeline (`omnisift run`) over its ZeroMQ REP socket."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "ask a running pipeline a question over ZeroMQ"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question")
    parser.add_argument("--stream", default=None, help="stream name (needed when the pipeline runs several)")
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5561", help="the pipeline's zmq.rep endpoint")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--server-key", default=None, help="server public certificate (CURVE)")
    parser.add_argument("--client-key", default=None, help="client secret certificate (CURVE)")
    parser.add_argument("--json", action="store_true", help="print the whole reply as JSON")


def run(args: argparse.Namespace) -> int:
    from pipeline.serve.zmq_api import request

    message = {"question": args.question, "stream": args.stream, "timeout": args.timeout}
    if args.max_new_tokens is not None:
        message["max_new_tokens"] = args.max_new_tokens
    reply = request(args.endpoint, message, timeout=args.timeout + 5.0, server_public_file=args.server_key,
                    client_secret_file=args.client_key)
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
