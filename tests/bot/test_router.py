"""The bot's router, texts and pacing: pure code, tables of input and expected output."""

from __future__ import annotations

import pytest

from actors.bot import build_router
from actors.bot.pace import Pace
from actors.bot.router import ADMINS, CommandArgs, Router, Who
from actors.bot.texts import copy_text, keywords_of, matches, parse_ref, shown
from config import DeliverySettings
from protocols.store import Channel, Post

USER = Who(user_id=7)
ADMIN = Who(user_id=1, admin=True)


async def nothing(event: object, chat: object) -> None:
    return None


@pytest.mark.parametrize("name", ["", "Start", "add-channel", "x" * 33, "über", "a b"])
def test_a_command_name_telegram_would_refuse_fails_at_registration(name: str) -> None:
    with pytest.raises(ValueError, match="invalid command name"):
        Router("r").command(name)


@pytest.mark.parametrize("prefix", ["", "é:", "x" * 64])
def test_a_callback_prefix_that_cannot_fit_fails_at_registration(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid callback prefix"):
        Router("r").callback(prefix)


def test_a_filter_must_be_callable_with_a_refusal() -> None:
    with pytest.raises(TypeError, match="not a filter"):
        Router("r").command("x", filters=[lambda who: True])  # type: ignore[list-item]


def test_the_first_route_whose_filters_pass_wins_and_a_refusal_is_named() -> None:
    router = Router("r")
    router.command("status", filters=[ADMINS])(nothing)
    assert router.find_command("status", ADMIN).route is not None
    refused = router.find_command("status", USER)
    assert refused.route is None and refused.refusal == ADMINS.refusal
    assert router.find_command("nope", USER).route is None
    assert router.find_command("nope", USER).refusal == ""


def test_routers_are_joined_in_order_and_one_fallback_is_allowed() -> None:
    first, second = Router("a"), Router("b")
    first.command("x", description="first")(nothing)
    second.command("x", description="second")(nothing)
    second.fallback(nothing)
    joined = Router("all").include(first, second)
    found = joined.find_command("x", USER).route
    assert found is not None and found.description == "first"
    with pytest.raises(ValueError, match="already has a fallback"):
        Router("again").include(second, second)


def test_callbacks_match_by_prefix() -> None:
    router = build_router()
    route = router.find_callback("rm:-1001:0", USER).route
    assert route is not None and route.key == "rm:"
    assert router.find_callback("zz:1", USER).route is None


def test_help_lists_status_for_admins_only() -> None:
    router = build_router()
    assert "status" not in [r.key for r in router.visible(USER)]
    assert "status" in [r.key for r in router.visible(ADMIN)]


def test_command_args_split_words() -> None:
    args = CommandArgs("add_channel", " @x  news  sport ", chat_id=1, message_id=2, who=USER)
    assert args.words == ["@x", "news", "sport"]


@pytest.mark.parametrize(
    ("raw", "ref"),
    [
        ("@durov_news", "@durov_news"),
        ("durov_news", "@durov_news"),
        ("https://t.me/durov_news", "@durov_news"),
        ("t.me/durov_news/42", "@durov_news"),
        ("https://t.me/+AbCdEf123", "https://t.me/+AbCdEf123"),
        ("https://t.me/joinchat/AbCdEf123", "https://t.me/+AbCdEf123"),
        ("https://t.me/c/123456/7", "-100123456"),
        ("-1001234567", "-1001234567"),
        ("@", None),
        ("@a", None),
        ("1234", None),
        ("'; DROP TABLE channels; --", None),
        ("<b>x</b>", None),
        ("@x" + "y" * 40, None),
        ("https://evil.example/t.me/x", None),
        ("@dur\u202eov", None),
        ("javascript:alert(1)", None),
    ],
)
def test_channel_references_are_read_strictly(raw: str, ref: str | None) -> None:
    assert parse_ref(raw) == ref


@pytest.mark.parametrize(
    ("words", "found"),
    [
        ([], []),
        (["News", "news", "sport"], ["news", "sport"]),
        (["a\u200bb"], None),
        (["x" * 65], None),
        ([str(n) for n in range(11)], None),
    ],
)
def test_keywords_are_plain_words_within_limits(words: list[str], found: list[str] | None) -> None:
    assert keywords_of(words, 10) == found


def test_keywords_match_case_insensitively_and_none_match_everything() -> None:
    assert matches("Big NEWS today", ["news"])
    assert not matches("weather", ["news", "sport"])
    assert matches("anything", [])


def test_shown_text_has_no_control_or_format_characters_and_is_short() -> None:
    assert shown("a\u202eb\u0000c\u200d") == "abc"
    assert shown("x" * 100, 10) == "x" * 9 + "…"


def test_a_copy_links_to_the_original_and_fits_a_message() -> None:
    public = Channel(id=-1001, username="news", title="News")
    private = Channel(id=-100777, title="Secret")
    post = Post(seq=1, channel_id=-1001, message_id=9, date=0, text="y" * 5000)
    text = copy_text(public, post)
    assert text.startswith("News\n\n") and text.endswith("https://t.me/news/9")
    assert len(text) <= 4096
    assert copy_text(private, post).endswith("https://t.me/c/777/9")
    assert "(deleted in the channel)" in copy_text(public, post, deleted_mark=True)


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pace_spaces_sends_overall_per_private_chat_and_per_group() -> None:
    clock = FakeTime()
    pace = Pace(DeliverySettings(overall_per_s=10, private_per_s=1, group_per_min=20), clock)
    pace.took(5)
    assert pace.ready_at(5) == pytest.approx(101.0)  # a private chat: 1/s
    assert pace.ready_at(6) == pytest.approx(100.1)  # anyone else: the overall 10/s
    pace.took(-1005)
    assert pace.chat_ready_at(-1005) == pytest.approx(103.0)  # a group: 20/min


def test_a_flood_wait_delays_its_chat_only() -> None:
    clock = FakeTime()
    pace = Pace(DeliverySettings(), clock)
    pace.flood_waited(5, 30)
    assert pace.ready_at(5) == pytest.approx(130.0)
    assert pace.ready_at(6) <= clock.now
    assert pace.waiting() == {5: pytest.approx(30.0)}
    clock.now = 131
    assert pace.waiting() == {}
