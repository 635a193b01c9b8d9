"""``/start``, ``/help``, and the answer to commands the bot does not know."""

from __future__ import annotations

from actors.bot.chat import Chat
from actors.bot.router import CommandArgs, Router, Who
from actors.bot.texts import shown

__all__ = ["help_text", "router"]

router = Router("start")

INTRO = (
    "I watch Telegram channels and send you their new posts, each once, with a link "
    "to the original."
)


def help_text(chat: Chat, who: Who) -> str:
    """The commands ``who`` may use, one per line, with what they do."""
    lines = [INTRO, "", "Commands:"]
    for route in chat.bot.router.visible(who):
        lines.append(f"{route.usage or '/' + route.key} — {route.description}")
    return "\n".join(lines)


@router.command("start", description="what this bot does")
async def start(args: CommandArgs, chat: Chat) -> None:
    await chat.reply(help_text(chat, args.who))


@router.command("help", description="this list of commands")
async def help_(args: CommandArgs, chat: Chat) -> None:
    await chat.reply(help_text(chat, args.who))


@router.fallback
async def unknown(args: CommandArgs, chat: Chat) -> None:
    name = shown(args.command, 32) or "?"
    await chat.reply(f"I don't know /{name}.\n\n{help_text(chat, args.who)}")
