"""The BotActor (``bot:<account>``): a bot account's commands, and delivery of new posts.

It hears its account's ``BotCommand`` and ``CallbackQuery`` events on the bus and answers
through the account's session actor; handler groups live in :mod:`actors.bot.handlers`,
one router each, joined here (first match wins, unknown commands get help). Who may use
the bot is the ``bot`` settings' ``mode`` (everyone, the allowlist, admins). The store's
``stored.*`` events wake :class:`~actors.bot.delivery.Delivery`, which delivers every
new post to the subscribers exactly once from the store's sequence.

The bus is at most once: a command whose event is lost gets no answer (the user sends it
again; every command is harmless to repeat). Deliveries never depend on the bus.
"""

from __future__ import annotations

import asyncio

from actors.bot.chat import Bot, Chat
from actors.bot.delivery import Delivery
from actors.bot.handlers import channels, start, status
from actors.bot.router import CommandArgs, Press, Route, Router, Who
from actors.session import session_address
from config import Settings
from protocols.events import (
    BotCommand,
    CallbackQuery,
    PostDeleted,
    PostEdited,
    PostStored,
    bot_topic,
    stored_topic,
)
from runtime.actor import Actor, ActorContext
from runtime.errors import RequestError
from runtime.handlers import handles
from runtime.loop import get_loop_thread

__all__ = ["BotActor", "bot_account", "bot_address", "build_router"]

PRIVATE = "Sorry, this bot is private."
TROUBLE = "Something went wrong on my side ({}); nothing was done twice. Please try again."


def build_router() -> Router:
    """Every handler group, in the order they are tried (status first: its filter)."""
    return Router("bot").include(status.router, start.router, channels.router)


def bot_address(account: str) -> str:
    return f"bot:{account}"


def bot_account(address: str) -> str:
    """The account of ``bot:<account>``. Raises ValueError for another address."""
    kind, _, account = address.partition(":")
    if kind != "bot" or not account:
        raise ValueError(f"a bot actor's address is bot:<account>, not {address!r}")
    return account


class BotActor(Actor):
    """One bot account's commands and deliveries (see the module docstring)."""

    def __init__(self, ctx: ActorContext, settings: Settings) -> None:
        super().__init__(ctx)
        self.account = bot_account(ctx.address)
        self.settings = settings.bot
        delivery = Delivery(
            ctx, self.account, self.settings.delivery, session=session_address(self.account)
        )
        self.bot = Bot(
            ctx=ctx,
            account=self.account,
            settings=self.settings,
            router=build_router(),
            delivery=delivery,
            session=session_address(self.account),
        )

    def on_start(self) -> None:
        self.ctx.subscribe(bot_topic(self.account))
        self.ctx.subscribe(stored_topic())
        get_loop_thread().call_soon(self.bot.delivery.start)

    def on_stop(self) -> None:
        get_loop_thread().call_soon(self._stop)

    def _stop(self) -> None:
        self.bot.delivery.stop()
        self.bot.background.cancel()

    # -- who may do what -------------------------------------------------------------------

    def who(self, user_id: int, username: str = "") -> Who:
        return Who(user_id=user_id, username=username, admin=user_id in self.settings.admins)

    def allowed(self, who: Who) -> bool:
        mode = self.settings.mode
        if mode == "everyone" or who.admin:
            return True
        return mode == "allowlist" and who.user_id in self.settings.allowlist

    # -- events --------------------------------------------------------------------------

    @handles(BotCommand)
    async def command(self, event: BotCommand) -> None:
        who = self.who(event.user_id, event.username)
        chat = Chat(self.bot, event.chat_id, event.message_id, edited=event.edited)
        if not self.allowed(who):
            await chat.reply(PRIVATE)
            return
        args = CommandArgs(
            command=event.command.lower(),
            text=event.args,
            chat_id=event.chat_id,
            message_id=event.message_id,
            who=who,
            edited=event.edited,
        )
        router = self.bot.router
        found = router.find_command(args.command, who)
        if found.route is not None:
            await self._run(found.route, args, chat)
        elif found.refusal:
            await chat.reply(found.refusal)
        elif router.fallback_handler is not None:
            await self._run(Route(args.command, router.fallback_handler), args, chat)

    @handles(CallbackQuery)
    async def press(self, event: CallbackQuery) -> None:
        who = self.who(event.user_id)
        chat = Chat(self.bot, event.chat_id, event.message_id)
        data = event.data.decode("utf-8", "replace")
        found = self.bot.router.find_callback(data, who)
        if not self.allowed(who) or found.route is None:
            await chat.answer(event.query_id, found.refusal or PRIVATE, alert=True)
            return
        press = Press(
            data=data,
            payload=data[len(found.route.key) :],
            query_id=event.query_id,
            chat_id=event.chat_id,
            message_id=event.message_id,
            who=who,
        )
        await self._run(found.route, press, chat)

    @handles(PostStored, PostEdited, PostDeleted)
    async def stored(self, event: PostStored | PostEdited | PostDeleted) -> None:
        self.bot.delivery.wake()

    async def _run(self, route: Route, event: CommandArgs | Press, chat: Chat) -> None:
        """Run a handler; a failure is told to the user once, typed, and logged."""
        try:
            await route.handler(event, chat)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = type(exc.error).__name__ if isinstance(exc, RequestError) else "internal"
            self.ctx.log.error("handler failed", handler=route.key, error=repr(exc))
            try:
                await chat.reply(TROUBLE.format(kind))
            except RequestError:
                self.ctx.log.warning("could not tell the user", chat=chat.chat_id)
