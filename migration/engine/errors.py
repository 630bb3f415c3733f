"""Error classes shared by the engine and every connector kind."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine or a connector raises on purpose."""


class TerminalError(EngineError):
    """Bad contract, bad data or bad configuration: retrying will not help."""


class TransientError(EngineError):
    """A timeout or a dropped connection: the caller may retry with backoff."""


class ContractError(TerminalError):
    """The contract is invalid; raised before any row moves."""


class ReadOnlyViolation(TerminalError):
    """A statement was refused by the read-only guard of a source."""
