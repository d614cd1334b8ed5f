"""What keeping each stream's last chunks for alert clips and the dashboard's picture costs: Ray object
store bytes held per stream at 640x480 (`python -m benchmarks.media_hold`).

A real source actor (synthetic 640x480 test pattern + tone, real time off) hands its chunks out as object
refs, exactly as to the driver's stream loops; the driver keeps the newest `keep` refs in a deque as
`StreamState.recent` does (`clips.chunks_before + 1`; 1 with clips off, for the picture). The object
store's own size of each held object is read from Ray's object directory
(`ray.experimental.get_object_locations`) and summed; the chunk's array bytes are printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import deque

MIB = 1024 * 1024


def stored_bytes(refs: list) -> int:
    """Bytes the object store holds for `refs`, as Ray's object directory reports each object's size."""
    from ray.experimental import get_object_locations

    return sum(info["object_size"] or 0 for info in get_object_locations(refs, timeout_ms=10_000).values())


async def held(keep: int, width: int, height: int, chunks: int) -> dict:
    import ray

    from pipeline.config import StreamConfig, load_pipeline_config
    from pipeline.ray.actors import close_source, start_source

    source = {"type": "synthetic", "pattern": "testsrc2", "width": width, "height": height, "fps": 10,
              "duration": None, "realtime": False}
    cfg = load_pipeline_config({"resources": {"source": {"num_cpus": 0}}})
    actor = start_source(StreamConfig(name="bench", source=source), cfg)
    recent: deque = deque(maxlen=keep)
    for _ in range(chunks):
        meta_ref, chunk_ref = actor.next_chunk.options(num_returns=2).remote(5.0)
        meta = await meta_ref
        if meta.kind != "chunk":
            continue
        recent.append((meta, chunk_ref))
    chunk = await recent[-1][1]
    array_bytes = chunk.frames.nbytes + chunk.audio.nbytes
    del chunk
    refs = [ref for _, ref in recent]
    stored = stored_bytes(refs)
    await close_source(actor)
    ray.kill(actor)
    return {"keep": keep, "size": f"{width}x{height}", "chunks_held": len(refs),
            "chunk_arrays_mib": round(array_bytes / MIB, 2), "held_per_stream_mib": round(stored / MIB, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--keep", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--chunks", type=int, default=12, help="chunks pulled per measurement")
    args = parser.parse_args()
    import logging

    import ray

    from pipeline.ray.local import start_local_ray

    start_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        for keep in args.keep:
            print(json.dumps(asyncio.run(held(keep, args.width, args.height, max(args.chunks, keep + 2)))),
                  flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
