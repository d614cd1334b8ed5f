"""Errors raised by ingestion; each message is one line that names the problem. And `one_line`, the one
rule by which the whole project turns an error into the line a user or a log sees."""

from __future__ import annotations

from .redact import redact_url


def one_line(value: object, limit: int | None = None) -> str:
    """An exception or a text as one line: runs of whitespace (newlines too) become one space, URL
    credentials are hidden, an exception without a message is its class name; at most `limit` characters."""
    line = redact_url(" ".join(str(value).split()))
    if not line and isinstance(value, BaseException):
        line = type(value).__name__
    return line if limit is None else line[:limit]


class StreamError(Exception):
    """Base class for every ingestion error."""


class ConfigError(StreamError):
    """A source configuration is invalid (names the field and the bad value)."""


class SourceError(StreamError):
    """A source cannot be opened or decoded (missing file, no device, undecodable media)."""


class SourceRefused(StreamError):
    """A client asked for a source the operator's policy does not allow (`streams.policy`); names the field
    and the rule."""
