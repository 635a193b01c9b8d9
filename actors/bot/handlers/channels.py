"""``/add_channel``, ``/remove_channel``, ``/my_channels`` and their buttons.

``/add_channel`` answers at once ("adding …") and edits that message with the real
outcome when the parser has one: the parser may be slow, or its reader flood-waited, for
minutes; the bot waits (retrying while the answer is "wait" or "no answer yet", which
is harmless because adding twice is one channel) up to ``bot.add_timeout_s``. So a user
never sees "timed out" for a channel that was added, and asking twice changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from msgspec.structs import replace

from actors.bot.chat import Chat, Keyboard
from actors.bot.router import CommandArgs, Press, Router
from actors.bot.texts import MAX_ARGS, ago, channel_name, keywords_of, parse_ref, shown
from actors.store_lists import EVERY_SUBSCRIPTION, all_channels, all_subscriptions
from protocols import errors
from protocols import parser as p
from protocols import store as st
from protocols.base import Message
from protocols.session import Button
from runtime.errors import RequestError

__all__ = ["router"]

router = Router("channels")

M = TypeVar("M", bound=Message)

ADD_USAGE = "/add_channel <@channel | t.me link | invite link> [keywords…]"
REMOVE_USAGE = "/remove_channel <@channel | t.me link | id>"
RETRY_S = 2.0
# Answers after which the same request may succeed: asked again until the time is up.
_TRANSIENT = (errors.Timeout, errors.Busy, errors.NoSuchAddress)


@router.command(
    "add_channel",
    usage=ADD_USAGE,
    description="watch a channel and get its new posts here (only those with a keyword, "
    "if you give keywords)",
)
async def add_channel(args: CommandArgs, chat: Chat) -> None:
    words = args.words
    ref = parse_ref(words[0]) if words and len(args.text) <= MAX_ARGS else None
    if ref is None:
        await chat.reply(_usage(args, ADD_USAGE))
        return
    keywords = keywords_of(words[1:], chat.bot.settings.max_keywords)
    if keywords is None:
        limit = chat.bot.settings.max_keywords
        await chat.reply(f"Keywords: at most {limit} plain words.\nUsage: {ADD_USAGE}")
        return
    message_id = await chat.reply(f"⏳ Adding {shown(ref)}…")
    chat.bot.later(_finish_add(chat, message_id, ref, keywords, args.who.user_id))


async def _finish_add(chat: Chat, message_id: int, ref: str, keywords: list[str], by: int) -> None:
    """Wait for the parser's real outcome, subscribe, and edit the "adding" message."""
    give_up = time.monotonic() + chat.bot.settings.add_timeout_s

    async def waiting(seconds: float) -> None:
        await chat.edit(
            message_id, f"⏳ Adding {shown(ref)}… Telegram asks to wait {_span(seconds)}."
        )

    try:
        added = await _patiently(
            lambda left: chat.ask(
                chat.bot.parser, p.AddChannel(ref=ref, by=f"tg:{by}"), timeout=left
            ),
            give_up,
            waiting,
        )
        channel = added.channel
        await _patiently(
            lambda left: chat.ask(
                chat.bot.store,
                st.Subscribe(subscriber=chat.subscriber, channel_id=channel.id, keywords=keywords),
                timeout=min(left, 10.0),
            ),
            give_up,
        )
    except RequestError as exc:
        await chat.edit(message_id, _add_refused(ref, exc.error, chat.bot.settings.add_timeout_s))
        return
    text = f"✅ Watching {channel_name(channel)}"
    text += (
        f" ({added.backfilled} recent posts stored)." if added.created else " (already watched)."
    )
    text += " New posts will come here"
    text += f" when they mention: {', '.join(keywords)}." if keywords else "."
    await chat.edit(message_id, text)


async def _patiently(
    ask: Callable[[float], Awaitable[M]],
    give_up: float,
    waiting: Callable[[float], Awaitable[None]] | None = None,
) -> M:
    """``ask(seconds left)`` until it answers, through flood waits and no-answers, until
    ``give_up``; raises RequestError with the last refusal."""
    while True:
        left = give_up - time.monotonic()
        try:
            return await ask(max(left, 0.5))
        except RequestError as exc:
            error = exc.error
            if isinstance(error, errors.FloodWait) and error.retry_after < left:
                if waiting is not None:
                    await waiting(error.retry_after)
                await asyncio.sleep(error.retry_after)
            elif isinstance(error, _TRANSIENT) and left > RETRY_S:
                await asyncio.sleep(RETRY_S)
            else:
                raise


def _add_refused(ref: str, error: errors.Error, budget: float) -> str:
    name = shown(ref)
    if isinstance(error, errors.NotFound):
        return f"❌ There is no channel {name}: check the username or link."
    if isinstance(error, errors.Unauthorized):
        return f"❌ {name} is private or closed to us: send its invite link (t.me/+…)."
    if isinstance(error, errors.FloodWait):
        return f"❌ Telegram asks to wait {_span(error.retry_after)}: try again then."
    if isinstance(error, errors.Unavailable):
        return "❌ No reader account can take another channel now (limit reached)."
    if isinstance(error, errors.BadRequest):
        return f"❌ {name} is not a channel.\nUsage: {ADD_USAGE}"
    if isinstance(error, _TRANSIENT):
        return (
            f"⌛ {name} is not added after {_span(budget)}: the channel service is not "
            "answering. Nothing is half done; try again later."
        )
    return f"❌ Could not add {name} ({type(error).__name__}). Try again later."


@router.command("remove_channel", usage=REMOVE_USAGE, description="stop getting a channel's posts")
async def remove_channel(args: CommandArgs, chat: Chat) -> None:
    words = args.words
    ref = parse_ref(words[0]) if len(words) == 1 and len(args.text) <= MAX_ARGS else None
    if ref is None or ref.startswith("https://"):
        await chat.reply(_usage(args, REMOVE_USAGE))
        return
    lookup = (
        st.GetChannel(channel_id=int(ref))
        if ref.startswith("-")
        else st.GetChannel(username=ref[1:])
    )
    try:
        channel = await chat.ask(chat.bot.store, lookup)
    except RequestError as exc:
        if not isinstance(exc.error, errors.NotFound):
            raise
        await chat.reply(f"You don't follow {shown(ref)}.")
        return
    removed = await _unsubscribe(chat, channel.id)
    name = channel_name(channel)
    await chat.reply(
        f"🗑 Removed {name}: no more posts from it." if removed else f"You don't follow {name}."
    )


async def _unsubscribe(chat: Chat, channel_id: int) -> bool:
    """Drop this chat's subscription; the parser stops watching a channel nobody follows."""
    gone = await chat.ask(
        chat.bot.store, st.Unsubscribe(subscriber=chat.subscriber, channel_id=channel_id)
    )
    left = await chat.ask(chat.bot.store, st.ListSubscriptions(channel_id=channel_id, limit=1))
    if gone.removed and not left.subscriptions:
        chat.bot.later(_stop_watching(chat, channel_id))
    return gone.removed


async def _stop_watching(chat: Chat, channel_id: int) -> None:
    await chat.ask(
        chat.bot.parser, p.RemoveChannel(ref=str(channel_id), by=chat.subscriber), timeout=60.0
    )


@router.command("my_channels", usage="/my_channels", description="the channels you follow")
async def my_channels(args: CommandArgs, chat: Chat) -> None:
    if args.text:
        await chat.reply("/my_channels takes no arguments: use the buttons to turn pages.")
        return
    text, keyboard = await _page(chat, 0)
    await chat.reply(text, keyboard)


@router.callback("pg:")
async def turn_page(press: Press, chat: Chat) -> None:
    if not press.payload.isdigit():
        await chat.answer(press.query_id, "That button is out of date.")
        return
    text, keyboard = await _page(chat, int(press.payload))
    await chat.answer(press.query_id)
    await chat.edit(press.message_id, text, keyboard)


@router.callback("rm:")
async def remove_button(press: Press, chat: Chat) -> None:
    channel, _, page = press.payload.partition(":")
    if not (channel.lstrip("-").isdigit() and page.isdigit()):
        await chat.answer(press.query_id, "That button is out of date.")
        return
    removed = await _unsubscribe(chat, int(channel))
    await chat.answer(press.query_id, "Removed." if removed else "Already removed.")
    text, keyboard = await _page(chat, int(page))
    await chat.edit(press.message_id, text, keyboard)


async def _page(chat: Chat, page: int) -> tuple[str, Keyboard]:
    """Page ``page`` (clamped) of this chat's channels: lines and a keyboard with a
    remove button per channel and the page turns."""
    ask = partial(chat.ask, chat.bot.store)
    subs = await all_subscriptions(ask, replace(EVERY_SUBSCRIPTION, subscriber=chat.subscriber))
    if not subs:
        return "You follow no channels yet. Add one with " + ADD_USAGE, []
    channels = {c.id: c for c in await all_channels(ask)}
    size = chat.bot.settings.page_size
    pages = (len(subs) + size - 1) // size
    page = min(page, pages - 1)
    lines = [f"Your channels ({len(subs)}), page {page + 1}/{pages}:"]
    keyboard: Keyboard = []
    first = page * size
    for number, sub in enumerate(subs[first : first + size], first + 1):
        channel = channels.get(sub.channel_id, st.Channel(id=sub.channel_id, state="removed"))
        last = ago(channel.last_post_at)
        line = f"{number}. {channel_name(channel)} — {channel.state}, last post {last}"
        if sub.keywords:
            line += f", only: {', '.join(sub.keywords)}"
        lines.append(line)
        label = f"❌ Remove {shown(channel.title or channel.username or str(channel.id), 40)}"
        keyboard.append([Button(text=label, data=f"rm:{channel.id}:{page}".encode())])
    turns = []
    if page > 0:
        turns.append(Button(text="◀ Back", data=f"pg:{page - 1}".encode()))
    if page + 1 < pages:
        turns.append(Button(text="More ▶", data=f"pg:{page + 1}".encode()))
    if turns:
        keyboard.append(turns)
    return "\n".join(lines), keyboard


def _usage(args: CommandArgs, usage: str) -> str:
    if not args.text:
        return f"Usage: {usage}"
    return f"I can't read {shown(args.text, 40)!r} as a channel.\nUsage: {usage}"


def _span(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
