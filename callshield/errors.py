"""The exception tree: one base class, a few kinds a caller can act on."""

from __future__ import annotations


class CallshieldError(Exception):
    """Base class of every error callshield raises on purpose."""


class ConfigError(CallshieldError):
    """The configuration is invalid; the message names the key and, where known, the line."""


class RuleError(CallshieldError):
    """A list or rule pattern cannot be parsed."""


class StoreError(CallshieldError):
    """The database cannot be opened or is not a callshield database."""


class ImportFormatError(CallshieldError):
    """A blocklist file as a whole is unusable (single bad rows are counted, not raised)."""
