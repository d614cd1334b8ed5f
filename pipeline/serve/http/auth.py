"""The bearer token of the HTTP API: required on every `/api` and `/v1` route when one is configured
(always when the server binds beyond loopback; `pipeline.serve.http.server.check_exposure`). Compared in
constant time; the token itself is never logged or echoed."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

_scheme = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>` (the token in http.token_env)")


def bearer(token: str | None):
    """A FastAPI dependency that refuses a request without `Authorization: Bearer <token>` (401)."""
    expected = None if token is None else token.encode()

    async def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_scheme)]) -> None:
        if expected is None:
            return
        given = b"" if credentials is None else credentials.credentials.encode()
        if not hmac.compare_digest(given, expected):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    return check
