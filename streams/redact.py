"""URL redaction: credentials never appear in logs, errors or reprs.

A password may hold raw `@`, `:`, spaces or `%`-escapes, so the user information of a URL is taken to end
at the *last* `@` of the authority: the last `@` before the first `/`, `?`, `#` or line end, or, when later,
the last `@` before the first whitespace (a raw `/` in a password). Erring this way can hide a little more
than the credentials (an `@` later in the same word or line, with no `/` before it); it never shows less.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_AUTHORITY_END = re.compile(r"[/?#\n]")
_WORD_END = re.compile(r"\s")


def _first(pattern: re.Pattern, text: str, start: int) -> int:
    m = pattern.search(text, start)
    return m.start() if m else len(text)


def _userinfo_end(text: str, start: int) -> int:
    """Index of the `@` that ends the user information of the URL whose authority begins at `start`; -1 if none."""
    by_authority = text.rfind("@", start, _first(_AUTHORITY_END, text, start))
    by_word = text.rfind("@", start, _first(_WORD_END, text, start))
    return max(by_authority, by_word)


def redact_url(text: str) -> str:
    """Replace the user information (`user:password@`) of every URL inside `text` with `***@`."""
    if not isinstance(text, str):
        return text
    out, pos = [], 0
    for m in _SCHEME.finditer(text):
        if m.start() < pos:  # a scheme-like string inside credentials already hidden
            continue
        at = _userinfo_end(text, m.end())
        if at >= 0:
            out += [text[pos : m.end()], "***"]
            pos = at
    return "".join(out) + text[pos:]
