"""A producer in its own process (so its buffers do not count in the receiver's memory): sends `n_large`
two-part messages with a payload of `large_bytes`, then 5 s of the test clip, then waits for stdin to close.

    python zmq_sender.py PORT N_LARGE LARGE_BYTES
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import zmq
from streams_zmq import header, send_span


def main() -> None:
    port, n_large, large_bytes = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(f"tcp://127.0.0.1:{port}")
    big = bytes(large_bytes)
    for i in range(n_large):
        push.send_multipart(
            [header(v=1, kind="video", t=900.0 + i, width=large_bytes // 3, height=1, format="rgb24"), big]
        )
    del big
    send_span(push, 0.0, 5.0)
    print("SENT", flush=True)
    sys.stdin.read()  # the test closes stdin when it is done
    push.close()


if __name__ == "__main__":
    main()
