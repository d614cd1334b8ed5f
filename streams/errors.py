"""Errors raised by ingestion; each message is one line that names the problem."""


class StreamError(Exception):
    """Base class for every ingestion error."""


class ConfigError(StreamError):
    """A source configuration is invalid (names the field and the bad value)."""


class SourceError(StreamError):
    """A source cannot be opened or decoded (missing file, no device, undecodable media)."""


class SourceRefused(StreamError):
    """A client asked for a source the operator's policy does not allow (`streams.policy`); names the field
    and the rule."""
