"""Calls to Ray actors from the driver: awaiting and cancelling them, and reading how they failed.

Ray reports an actor that died or is restarting with exceptions of its own, and wraps an exception raised
inside an actor in a `RayTaskError` (the cause is what the user needs to see). An actor that is restarting
(or briefly unreachable) fails calls with `ActorUnavailableError`: the same call may succeed once it is
back, and a call that was running when it died may or may not have run. One dead for good (its
`max_restarts` used up, or killed without restart) fails them with `ActorDiedError`. A task whose argument
an actor failed to produce raises that actor's error, naming that actor. Ray is imported inside the
functions, as everywhere in the driver, so importing `pipeline.ray.stream` does not start loading Ray.
"""

from __future__ import annotations

import re
from typing import Any


def actor_gone(e: BaseException) -> bool:
    """Whether a call failed because its actor died or is restarting (rather than raising itself)."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return isinstance(e, (RayActorError, ActorDiedError, ActorUnavailableError))


def actor_restarting(e: BaseException) -> bool:
    """Whether a call failed because its actor is restarting or briefly unreachable (a retry may succeed),
    rather than dead for good."""
    from ray.exceptions import ActorUnavailableError

    return isinstance(e, ActorUnavailableError)


def failed_actor(e: BaseException) -> str | None:
    """The id (hex) of the actor whose death or restart failed a call, if Ray says: for a task whose
    argument an actor failed to produce, that actor, not the one called."""
    return getattr(e, "actor_id", None) or getattr(unwrap(e), "actor_id", None)


def actor_id(handle: Any) -> str | None:
    """The id (hex) of the actor behind a handle, as `failed_actor` gives it."""
    aid = getattr(handle, "_actor_id", None)
    return None if aid is None else aid.hex()


def unwrap(e: BaseException) -> BaseException:
    """The exception the actor raised, without Ray's `RayTaskError` wrapper around it."""
    from ray.exceptions import RayTaskError

    if isinstance(e, RayTaskError) and e.cause is not None:
        return e.cause
    return e


_RAISED = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception): (.+)$")  # "pkg.SomeError: message"


def creation_reason(e: BaseException) -> str:
    """The one-line reason an actor's constructor failed. Ray wraps it in an ActorDiedError whose text is
    the whole creation traceback; the constructor's own exception is its last "SomeError: message" line."""
    text = str(unwrap(e))
    for ln in reversed([ln.strip() for ln in text.splitlines() if ln.strip()]):
        raised = _RAISED.match(ln)
        if raised:
            text = raised.group(1)
            break
    return " ".join(text.split())[:300]


def creation_error(name: str, e: BaseException) -> Exception:
    """Why a source actor's constructor failed, as the SourceError the caller of `add_stream` expects."""
    from streams.errors import SourceError

    return SourceError(f"stream {name!r}: {creation_reason(e)}")


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
