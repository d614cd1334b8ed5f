"""A synthetic monitoring world with a ground-truth event log: a source type (`type: world`) and mp4 files.

    from streams.world import World
    world = World(seed=3, scenario="standard", duration=600)
    world.events(until=120)           # [WorldEvent(t=0.0, kind='background', value='blue'), ...]
    world.write_mp4("w.mp4", 60)      # and w.mp4.events.jsonl

    from streams import read_chunks
    for chunk in read_chunks({"type": "world", "seed": 3, "duration": 60}):
        ...

The log (`timeline`) is drawn from the seed; frames and audio are rendered from it on the fly (`render`),
so hours cost nothing to store. Knows nothing of models or questions (see `pipeline.offline.world`).
"""

from .timeline import (
    BACKGROUNDS,
    BEEP_SECONDS,
    KINDS,
    OBJECT_COLOURS,
    PITCHES,
    SCENARIOS,
    SHAPES,
    WORD_SECONDS,
    WORDS,
    Scenario,
    Timeline,
    WorldEvent,
    WorldObject,
)
from .world import World, WorldProducer

__all__ = [
    "BACKGROUNDS",
    "BEEP_SECONDS",
    "KINDS",
    "OBJECT_COLOURS",
    "PITCHES",
    "SCENARIOS",
    "SHAPES",
    "WORDS",
    "WORD_SECONDS",
    "Scenario",
    "Timeline",
    "World",
    "WorldEvent",
    "WorldObject",
    "WorldProducer",
]
