"""What the store refuses: its typed refusals, and the checks of every input field.

Each check returns the value it checked (normalised where said) or raises
:class:`Invalid` naming the field, before anything is written. A refusal is a
:class:`StoreError` whose :meth:`~StoreError.to_error` is the typed answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

from protocols import errors
from protocols import store as p

__all__ = [
    "CHANNEL_STATES",
    "DELIVERY_STATES",
    "MAX_CHANNEL_FILTER",
    "MAX_LINK",
    "MAX_QUERY",
    "MAX_TITLE",
    "Invalid",
    "Missing",
    "StoreError",
    "after_id",
    "batch",
    "channel_id",
    "choice",
    "count",
    "error",
    "integer",
    "keywords",
    "limit",
    "message_id",
    "name",
    "non_negative",
    "post",
    "text",
    "username",
]

INT64_MAX = 2**63 - 1
MAX_NAME = 200  # subscriber, cursor, reader and added_by names
MAX_TITLE = 256
MAX_LINK = 256
MAX_ERROR = 1000  # longer error texts are cut, not refused
MAX_KEYWORDS = 50
MAX_KEYWORD = 100
MAX_QUERY = 1000
MAX_MEDIA = 32
MAX_CHANNEL_FILTER = 1000

CHANNEL_STATES: tuple[str, ...] = get_args(p.ChannelState)
DELIVERY_STATES: tuple[str, ...] = get_args(p.DeliveryStatus)


class StoreError(Exception):
    """A request the store refuses; :meth:`to_error` is the typed answer."""

    def to_error(self) -> errors.Error:
        raise NotImplementedError


class Invalid(StoreError):
    """Malformed or out-of-range input: answered ``BadRequest``."""

    def to_error(self) -> errors.Error:
        return errors.BadRequest(message=str(self))


class Missing(StoreError):
    """The request names something the store does not hold: answered ``NotFound``."""

    def to_error(self) -> errors.Error:
        return errors.NotFound(message=str(self))


def integer(value: object, what: str, low: int, high: int = INT64_MAX) -> int:
    if type(value) is not int or not low <= value <= high:
        raise Invalid(f"{what} must be an integer in [{low}, {high}], not {value!r:.40}")
    return value


def non_negative(value: object, what: str) -> int:
    return integer(value, what, 0)


def message_id(value: object) -> int:
    return integer(value, "message_id", 1)


def channel_id(value: object) -> int:
    if type(value) is not int or value == 0 or not -INT64_MAX <= value <= INT64_MAX:
        raise Invalid(f"channel id must be a non-zero 64-bit integer, not {value!r:.40}")
    return value


def after_id(value: object, what: str) -> int:
    """A channel id a page continues after, or 0 (from the first)."""
    return integer(value, what, -INT64_MAX)


def limit(value: object) -> int:
    return integer(value, "limit", 1, p.MAX_PAGE)


def count(items: list[Any], what: str, most: int) -> None:
    if len(items) > most:
        raise Invalid(f"{what} has {len(items)} items, at most {most} are allowed")


def batch(channel: object, items: list[Any], what: str, check: Callable[[Any], object]) -> None:
    """A write of up to ``MAX_BATCH`` items of one channel, each passing ``check``."""
    channel_id(channel)
    count(items, what, p.MAX_BATCH)
    for item in items:
        check(item)


def text(value: object, what: str, most: int) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{what} must be a string")
    if len(value) > most:
        raise Invalid(f"{what} is {len(value)} characters long, at most {most} are allowed")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid(f"{what} is not valid Unicode text") from None
    return value


def name(value: object, what: str, *, required: bool = True) -> str:
    found = text(value, what, MAX_NAME)
    if required and not found:
        raise Invalid(f"{what} is empty")
    if not found.isprintable():
        raise Invalid(f"{what} has control characters")
    return found


def username(value: object) -> str:
    """The username without a leading ``@``."""
    bare = text(value, "username", 64).removeprefix("@")
    if bare and not (bare.replace("_", "").isalnum() and bare.isascii()):
        raise Invalid(f"username {bare!r:.70} has characters other than letters, digits and _")
    return bare


def choice(value: object, what: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise Invalid(f"{what} must be one of {', '.join(allowed)}, not {value!r:.40}")
    return str(value)


def error(value: object) -> str:
    """An error text, cut to ``MAX_ERROR`` characters."""
    return text(value, "error", 1_000_000)[:MAX_ERROR]


def keywords(values: list[Any]) -> list[str]:
    """The keywords stripped, without repeats, in their order."""
    count(values, "keywords", MAX_KEYWORDS)
    found = [text(k, "keyword", MAX_KEYWORD).strip() for k in values]
    if not all(found):
        raise Invalid("a keyword is empty")
    return list(dict.fromkeys(found))


def post(data: p.PostData) -> None:
    message_id(data.message_id)
    for what in ("date", "edit_date", "views", "forwards"):
        non_negative(getattr(data, what), what)
    text(data.text, "text", p.MAX_TEXT)
    media = text(data.media, "media", MAX_MEDIA)
    if media and not (media.isascii() and media.replace("_", "").isalpha() and media.islower()):
        raise Invalid(f"media must be a lower-case word, not {media!r}")
    if not data.text and not media:
        raise Invalid(f"post {data.message_id} has neither text nor media")
