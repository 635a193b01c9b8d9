"""``/status`` for the bot's admins: readers, channels and their lag, flood waits, queue."""

from __future__ import annotations

from actors.bot.chat import Chat
from actors.bot.router import ADMINS, CommandArgs, Router
from actors.bot.texts import MAX_MESSAGE, channel_name
from protocols import parser as p
from protocols import store as st
from runtime.errors import RequestError

__all__ = ["router"]

router = Router("status")


@router.command(
    "status",
    filters=[ADMINS],
    usage="/status",
    description="accounts, channels, lag, flood waits and the delivery queue (admins)",
)
async def status(args: CommandArgs, chat: Chat) -> None:
    lines = ["Status"]
    try:
        parser = await chat.ask(chat.bot.parser, p.GetParserStatus())
    except RequestError as exc:
        lines.append(f"parser: not answering ({type(exc.error).__name__})")
    else:
        lines.append(f"readers ({len(parser.readers)}):")
        for r in parser.readers:
            wait = f", flood wait {r.flood_wait_s:.0f} s" if r.flood_wait_s > 0 else ""
            lines.append(f"  {r.account}: {r.state}, {r.channels}/{r.limit} channels{wait}")
        lines.append(f"channels ({len(parser.channels)}):")
        for c in parser.channels:
            error = f", {c.error}" if c.error else ""
            lines.append(f"  {channel_name(c)}: {c.state}, lag {c.lag_s:.0f} s{error}")
    try:
        stats = await chat.ask(chat.bot.store, st.GetStoreStats())
    except RequestError as exc:
        lines.append(f"store: not answering ({type(exc.error).__name__})")
    else:
        lines.append(
            f"store: {stats.posts} posts, {stats.subscriptions} subscriptions, seq {stats.last_seq}"
        )
    counts = chat.bot.delivery.counts
    lines.append(
        f"delivery: {counts.queued} queued, {counts.sent} sent, {counts.edited} edited, "
        f"{counts.deleted} deleted, {counts.failed} failed, cursor {counts.cursor}"
    )
    waits = chat.bot.delivery.pace.waiting()
    if waits:
        lines.append(
            "chats flood-waited: " + ", ".join(f"{c} ({s:.0f} s)" for c, s in waits.items())
        )
    text = "\n".join(lines)
    await chat.reply(text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…")
