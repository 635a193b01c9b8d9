"""Telethon's events for one account, published as Switchboard's bus events.

A channel post, edit or deletion goes to ``post.<channel_id>``; a private ``/command`` to
a bot account (again, ``edited``, when its sender corrects it) and a button press go to
``bot.<account>``; any other incoming message to
``message.<account>``. The bus is at most once: these wake consumers up, the store keeps
the record. Every handler runs on the loop thread, inside Telethon's update dispatch.
"""

from __future__ import annotations

from telethon import TelegramClient, events

from actors import convert
from protocols.events import (
    BotCommand,
    CallbackQuery,
    DeletedPost,
    EditedPost,
    NewMessage,
    NewPost,
    bot_topic,
    message_topic,
    post_topic,
)
from protocols.session import ChatMessage
from runtime.actor import ActorContext

__all__ = ["EventPublisher"]


class EventPublisher:
    """Publishes one account's updates; :meth:`attach` it to the account's client."""

    def __init__(self, ctx: ActorContext, account: str, bot: bool) -> None:
        self.ctx = ctx
        self.account = account
        self.bot = bot

    def attach(self, client: TelegramClient) -> None:
        """Register the handlers on ``client`` (before it connects, so nothing is missed)."""
        client.add_event_handler(self.on_new_message, events.NewMessage(incoming=True))
        client.add_event_handler(self.on_edited, events.MessageEdited())
        client.add_event_handler(self.on_deleted, events.MessageDeleted())
        client.add_event_handler(self.on_callback, events.CallbackQuery())

    async def on_new_message(self, event: events.NewMessage.Event) -> None:
        msg = convert.message(event.message)
        if event.is_channel and not event.is_group:
            post = NewPost(account=self.account, channel_id=event.chat_id, message=msg)
            self.ctx.publish(post_topic(event.chat_id), post)
            return
        if self._is_command(event, msg):
            await self._publish_command(event, msg, edited=False)
            return
        self.ctx.publish(message_topic(self.account), NewMessage(account=self.account, message=msg))

    def _is_command(self, event: events.NewMessage.Event, msg: ChatMessage) -> bool:
        return self.bot and event.is_private and not event.out and msg.text.startswith("/")

    async def _publish_command(
        self, event: events.NewMessage.Event, msg: ChatMessage, *, edited: bool
    ) -> None:
        head, _, args = msg.text.partition(" ")
        sender = await event.get_sender()
        command = BotCommand(
            account=self.account,
            command=head[1:].split("@", 1)[0],
            args=args.strip(),
            chat_id=event.chat_id,
            user_id=event.sender_id or 0,
            message_id=msg.id,
            username=getattr(sender, "username", "") or "",
            edited=edited,
        )
        self.ctx.publish(bot_topic(self.account), command)

    async def on_edited(self, event: events.MessageEdited.Event) -> None:
        msg = convert.message(event.message)
        if event.is_channel and not event.is_group:
            edited = EditedPost(account=self.account, channel_id=event.chat_id, message=msg)
            self.ctx.publish(post_topic(event.chat_id), edited)
        elif self._is_command(event, msg):
            # A corrected command: the bot replaces its answer instead of adding one.
            await self._publish_command(event, msg, edited=True)

    async def on_deleted(self, event: events.MessageDeleted.Event) -> None:
        if event.chat_id is not None:
            deleted = DeletedPost(
                account=self.account, channel_id=event.chat_id, message_ids=list(event.deleted_ids)
            )
            self.ctx.publish(post_topic(event.chat_id), deleted)

    async def on_callback(self, event: events.CallbackQuery.Event) -> None:
        query = CallbackQuery(
            account=self.account,
            query_id=event.query.query_id,
            data=event.data or b"",
            chat_id=event.chat_id or 0,
            user_id=event.sender_id or 0,
            message_id=event.message_id or 0,
        )
        self.ctx.publish(bot_topic(self.account), query)
