"""What a handler answers with: :class:`Chat`, the conversation a command came from.

Every reply goes through the bot account's session actor. A reply to a command message
carries the idempotency key ``reply:<chat>:<message id>[:n]``, so a repeat (a retried
request, the same command event handled twice, an edited command message) never sends a
second message: the session actor answers with the first one. For an edited command the
handler runs again and its replies *replace* the first ones (the first message is edited
to the new text), as a person expects when they correct a command.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from actors.bot.delivery import Delivery
from actors.bot.router import Router
from actors.bot.tasks import Tasks
from config import BotSettings
from protocols import session as s
from protocols.base import R, Request
from runtime.actor import ActorContext

__all__ = ["Bot", "Chat", "Keyboard"]

Keyboard = list[list[s.Button]]
REPLY_TIMEOUT_S = 15.0


@dataclass
class Bot:
    """What every handler of one bot account shares."""

    ctx: ActorContext
    account: str
    settings: BotSettings
    router: Router
    delivery: Delivery
    session: str
    store: str = "store:main"
    parser: str = "parser:main"
    background: Tasks = field(default_factory=lambda: Tasks("background work"))

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the loop after the handler returned (its failure is logged)."""
        self.background.spawn(work)


class Chat:
    """The chat a command or press came from, and how to answer there."""

    def __init__(self, bot: Bot, chat_id: int, message_id: int, *, edited: bool = False) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.edited = edited
        self._key = f"reply:{chat_id}:{message_id}"
        self._replies = 0

    @property
    def subscriber(self) -> str:
        """This chat as a store subscriber: ``bot:<account>:<chat id>``."""
        return f"bot:{self.bot.account}:{self.chat_id}"

    async def reply(self, text: str, buttons: Keyboard | None = None) -> int:
        """Send ``text`` (once per command message, see the module docstring); its id."""
        key = self._key if not self._replies else f"{self._key}:{self._replies}"
        self._replies += 1
        sent = await self.bot.ctx.call(
            self.bot.session,
            s.SendMessage(peer=self.chat_id, text=text, buttons=buttons or []),
            timeout=REPLY_TIMEOUT_S,
            idempotency_key=key,
        )
        if self.edited:
            await self.edit(sent.message.id, text, buttons)
        return sent.message.id

    async def edit(self, message_id: int, text: str, buttons: Keyboard | None = None) -> None:
        """Replace the text and keyboard of one of the bot's messages in this chat."""
        await self.bot.ctx.call(
            self.bot.session,
            s.EditMessage(
                peer=self.chat_id, message_id=message_id, text=text, buttons=buttons or []
            ),
            timeout=REPLY_TIMEOUT_S,
        )

    async def answer(self, query_id: int, text: str = "", alert: bool = False) -> None:
        """Answer a button press (the little notice the presser sees)."""
        await self.bot.ctx.call(
            self.bot.session,
            s.AnswerCallback(query_id=query_id, text=text, alert=alert),
            timeout=REPLY_TIMEOUT_S,
        )

    async def ask(self, target: str, body: Request[R], timeout: float = 10.0) -> R:
        """A typed request to another actor; raises RequestError with its typed error."""
        return await self.bot.ctx.call(target, body, timeout=timeout)
