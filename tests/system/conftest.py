"""The session tests' real-process fixtures (sandbox, config), for the whole system."""

from tests.session.conftest import sandbox, sessions

__all__ = ["sandbox", "sessions"]
