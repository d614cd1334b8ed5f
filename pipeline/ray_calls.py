"""Calls to Ray actors from the driver: awaiting and cancelling them, and reading how they failed.

Ray reports an actor that died or is restarting with exceptions of its own (a retry may succeed once it
is back), and wraps an exception raised inside an actor in a `RayTaskError` (the cause is what the user
needs to see). Ray is imported inside the functions, as everywhere in the driver, so importing
`pipeline.stream` does not start loading Ray.
"""

from __future__ import annotations

from typing import Any


def actor_gone(e: BaseException) -> bool:
    """Whether a call failed because its actor died or is restarting (rather than raising itself)."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return isinstance(e, (RayActorError, ActorDiedError, ActorUnavailableError))


def unwrap(e: BaseException) -> BaseException:
    """The exception the actor raised, without Ray's `RayTaskError` wrapper around it."""
    from ray.exceptions import RayTaskError

    if isinstance(e, RayTaskError) and e.cause is not None:
        return e.cause
    return e


def one_line(e: BaseException) -> str:
    """An error as one line of at most 300 characters, for stream states and logs."""
    return " ".join(str(e).split())[:300] or type(e).__name__


def creation_error(name: str, e: BaseException) -> Exception:
    """The one-line reason a source actor's constructor failed (Ray wraps it in an ActorDiedError
    whose text is the whole creation traceback), as the SourceError the caller of `add_stream` expects."""
    from streams.errors import SourceError

    text = str(unwrap(e))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):  # the original exception's own line in the creation traceback
        if ln.startswith(("streams.errors.", "SourceError", "ConfigError", "FileNotFoundError", "ValueError")):
            text = ln.split(": ", 1)[-1]
            break
    return SourceError(f"stream {name!r}: {' '.join(text.split())[:300]}")


async def await_ref(ref: Any) -> Any:
    """Await an object ref inside a coroutine (so `asyncio.wait_for` can time it out)."""
    return await ref


def cancel(ref: Any) -> None:
    """Ask Ray to cancel the task behind `ref`, best effort."""
    try:
        import ray

        ray.cancel(ref)
    except Exception:  # noqa: BLE001 - best effort: a running threaded-actor task finishes on its own
        pass
