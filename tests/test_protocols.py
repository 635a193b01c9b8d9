"""Every message class is registered once, and every request declares its reply."""

from __future__ import annotations

import importlib
import pkgutil

import msgspec
import pytest

import protocols
from protocols import codec, errors, events
from protocols.base import Message, Request


def _all_message_classes() -> set[type[Message]]:
    for info in pkgutil.iter_modules(protocols.__path__):
        importlib.import_module(f"protocols.{info.name}")
    found: set[type[Message]] = set()
    todo: list[type] = [Message]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("protocols.") and sub is not Request:
                found.add(sub)
    return found


def _parts_of_bodies() -> set[type]:
    """Struct types that appear inside registered bodies (values such as ``User``)."""
    info = msgspec.inspect.multi_type_info(codec.BODY_TYPES)
    parts: set[type] = set()
    todo = list(info)
    while todo:
        t = todo.pop()
        if isinstance(t, msgspec.inspect.StructType):
            if t.cls in parts:
                continue
            parts.add(t.cls)
            todo += [f.type for f in t.fields]
        elif isinstance(t, msgspec.inspect.UnionType):
            todo += list(t.types)
        elif isinstance(t, (msgspec.inspect.ListType, msgspec.inspect.DictType)):
            todo += [getattr(t, "item_type", None) or t.value_type]
    return parts


def test_every_message_class_is_registered_in_the_codec() -> None:
    abstract = {errors.Error}
    missing = _all_message_classes() - set(codec.BODY_TYPES) - _parts_of_bodies() - abstract
    assert not missing, f"not in codec.BODY_TYPES: {sorted(c.__name__ for c in missing)}"


def test_tags_are_unique() -> None:
    tags = [c.__struct_config__.tag for c in codec.BODY_TYPES]
    assert len(tags) == len(set(tags))


def test_every_body_is_a_request_a_reply_an_error_or_an_event() -> None:
    replies = {r for c in codec.BODY_TYPES if issubclass(c, Request) for r in c.reply}
    stray = [
        c.__name__
        for c in codec.BODY_TYPES
        if not (issubclass(c, (Request, errors.Error)) or c in replies or c in events.MESSAGES)
    ]
    assert not stray, f"requests must declare their reply as Request[Reply]: {stray}"


@pytest.mark.parametrize(
    "request_type",
    [c for c in codec.BODY_TYPES if issubclass(c, Request)],
    ids=lambda c: c.__name__,
)
def test_every_request_declares_registered_reply_types(request_type: type[Request]) -> None:
    assert request_type.reply, f"{request_type.__name__} declares no reply"
    for reply in request_type.reply:
        assert reply in codec.BODY_TYPES, f"{reply.__name__} is not registered"


def test_a_union_reply_is_read_into_its_members() -> None:
    from protocols.session import LoggedIn, PasswordNeeded, SubmitCode

    assert SubmitCode.reply == (LoggedIn, PasswordNeeded)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (events.post_topic(-100123), "post.-100123."),
        (events.post_topic(), "post."),
        (events.session_topic("alice"), "session.alice."),
        (events.bot_topic("newsbot"), "bot.newsbot."),
        (events.message_topic("alice"), "message.alice."),
        (events.actor_topic("store:main"), "actor.store:main."),
    ],
)
def test_topics(topic: str, expected: str) -> None:
    assert topic == expected


def test_a_channel_topic_does_not_match_a_longer_id() -> None:
    assert not events.post_topic(-1001234).startswith(events.post_topic(-100123))
