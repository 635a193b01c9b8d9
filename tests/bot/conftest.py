"""The session tests' real-process fixtures (sandbox, config, broker), for the bot."""

from tests.session.conftest import broker, client, sandbox, sessions

__all__ = ["broker", "client", "sandbox", "sessions"]
