"""The pipeline on Ray: sources -> encoder -> model actors, driven by two coroutines per stream.

    source_worker.py, encoder_worker.py, model_worker.py
                the plain classes the actors host (tested without Ray); models.py what they load
    actors.py   those classes made remote with options from the config
    loops.py    the driver's pump and appender of one stream; state.py and events.py their bookkeeping,
                policy.py what a failed actor call means (send again, lose the chunk, fail the stream)
    calls.py    awaiting actor calls and reading how they failed
    replicas.py the encoder and model replicas and which serves each stream; sharding.py the plain
                assignment (least load, sticky) and the failover of a dead replica's streams
    frontends.py, media.py  the network faces it starts, and the pictures and clips it hands them
    stream.py   `OmniStream`, the async API: owns Ray, the actors, every stream, and the network faces

May import `pipeline.session`, `pipeline.serve`, `pipeline.config` and `pipeline.messages`; only the
command line (`pipeline.cli`) and the benchmarks import it.
"""

from pipeline.ray.stream import OmniStream, StreamNotFound

__all__ = ["OmniStream", "StreamNotFound"]
