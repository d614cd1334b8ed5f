"""The pipeline on Ray: sources -> encoder -> model actors, driven by two coroutines per stream.

    workers.py  the plain classes the actors host (tested without Ray)
    actors.py   those classes made remote with options from the config
    loops.py    the driver's pump and appender of one stream; state.py and events.py their bookkeeping
    calls.py    awaiting actor calls and reading how they failed
    stream.py   `OmniStream`, the async API: owns Ray, the actors, every stream, and the network faces

May import `pipeline.session`, `pipeline.serve`, `pipeline.config` and `pipeline.messages`; only the
command line (`pipeline.cli`) and the benchmarks import it.
"""

from pipeline.ray.stream import OmniStream, StreamNotFound

__all__ = ["OmniStream", "StreamNotFound"]
