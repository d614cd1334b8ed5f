"""URL redaction: credentials never appear in logs, errors or reprs."""

from __future__ import annotations

import re

_CRED = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^/@\s]*)@")


def redact_url(text: str) -> str:
    """Replace `user:password@` in every URL inside `text` with `***@`."""
    if not isinstance(text, str):
        return text
    return _CRED.sub(lambda m: f"{m.group('scheme')}***@", text)
