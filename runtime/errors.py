"""Exceptions the runtime raises to Python callers (the wire carries typed error bodies)."""

from __future__ import annotations

from protocols.errors import Error, NotOwner


class RequestError(Exception):
    """A request was answered with a typed error body (``error``) instead of a result."""

    def __init__(self, error: Error) -> None:
        super().__init__(f"{type(error).__name__}: {error.message}")
        self.error = error


class AddressTakenError(RequestError):
    """A node asked for an address that a live node owns; ``error.owner`` names it."""

    def __init__(self, error: NotOwner) -> None:
        super().__init__(error)
        self.error: NotOwner = error


class UsageError(ValueError):
    """The command line or configuration names something that does not exist."""
