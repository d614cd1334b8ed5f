"""Questions about the monitoring world (`streams.world`) with closed answers, scored against its event log.

    from streams.world import World
    from pipeline.offline.world import Log, ask, is_correct
    log = Log(World(3).events(until=300))
    q = ask("screen_colour", log, 120.0)   # Question(kind, t, text, gold, options); q.prompt lists the options
    is_correct(q, "Blue.")

`questions`: the question types and their gold answers from the log alone; `scoring`: free text to an
option. No Ray and no model here: `benchmarks.live_accuracy` puts the questions to a live session.
"""

from pipeline.offline.world.questions import QUESTION_TYPES, Log, Question, ask, draw_questions
from pipeline.offline.world.scoring import choose, is_correct, normalise

__all__ = ["QUESTION_TYPES", "Log", "Question", "ask", "choose", "draw_questions", "is_correct", "normalise"]
