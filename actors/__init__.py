"""The application's actors, and the table that assembles them from settings.

``runtime`` is a library that knows nothing of these: ``run.py`` (and tests, and
embedding programs) take the factories from here and hand them to
:mod:`runtime.launcher`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from actors.api import ApiActor
from actors.bot import BotActor
from actors.echo import EchoActor
from actors.parser import PARSER_ADDRESS, ParserActor
from actors.session import SessionActor, session_address
from actors.store import StoreActor
from config import Settings
from runtime.actor import ActorFactory
from runtime.errors import UsageError

__all__ = ["actor_kinds", "bot_actors", "monitor_actors", "session_actors"]


def actor_kinds(settings: Settings) -> dict[str, ActorFactory]:
    """The actor kinds a node can host by name (``run.py --actors KIND[=ADDRESS]``).

    ``bot`` is one BotActor per bot account, at ``bot:<account>``
    (``--actors bot=bot:newsbot``).
    """
    store = functools.partial(
        StoreActor,
        path=settings.store_path(),
        synchronous=settings.store.synchronous,
        batch_limit=settings.store.batch_limit,
    )
    return {
        "echo": EchoActor,
        "parser": functools.partial(ParserActor, settings=settings.parser),
        "bot": functools.partial(BotActor, settings=settings),
        "store": store,
        "api": functools.partial(ApiActor, settings=settings),
    }


def monitor_actors(settings: Settings) -> dict[str, ActorFactory]:
    """The channel monitor's actors (``parser:main``, and the store it writes to) when
    reader accounts are configured (``parser.readers``); else none."""
    if not settings.parser.readers:
        return {}
    kinds = actor_kinds(settings)
    hosted = {PARSER_ADDRESS: kinds["parser"]}
    if "store" in kinds:
        hosted["store:main"] = kinds["store"]
    return hosted


def bot_actors(
    settings: Settings, accounts: Iterable[str] | None = None
) -> dict[str, ActorFactory]:
    """{``bot:<name>``: factory} for each named bot account (default: every bot account).

    Raises UsageError naming an account that is not a configured bot account.
    """
    bots = sorted(name for name, acc in settings.accounts.items() if acc.kind == "bot")
    named = bots if accounts is None else list(accounts)
    for name in named:
        if name not in bots:
            known = ", ".join(bots) or "none"
            raise UsageError(f"{name!r} is not a configured bot account (bot accounts: {known})")
    factory = actor_kinds(settings)["bot"]
    return {f"bot:{name}": factory for name in named}


def session_actors(settings: Settings, accounts: Iterable[str]) -> dict[str, ActorFactory]:
    """{``session:<name>``: factory} for each named account.

    Raises UsageError naming an account that is not configured.
    """
    hosted: dict[str, ActorFactory] = {}
    for name in accounts:
        if name not in settings.accounts:
            known = ", ".join(sorted(settings.accounts)) or "none"
            raise UsageError(f"account {name!r} is not configured (configured: {known})")
        hosted[session_address(name)] = functools.partial(
            SessionActor,
            account=name,
            settings=settings.account(name),
            session_settings=settings.session,
            data_dir=settings.data_dir,
        )
    return hosted
