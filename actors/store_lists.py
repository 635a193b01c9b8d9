"""Whole lists from the store's pages, on the asking side.

The store answers ``ListChannels``, ``ListSubscriptions`` and ``GetStoreStats`` one page at
a time (:mod:`protocols.store`), so that every reply fits in a frame. :func:`pages` walks
them for any way of asking (``ctx.call``, ``client.request``, a bot's ``chat.ask``);
:func:`all_channels` and :func:`all_subscriptions` collect a whole list. Each page is its
own read: a row added or removed while the pages are walked may be in the list or not,
but no row is listed twice and none that stays is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol, TypeVar

from protocols import store as st

__all__ = [
    "EVERY_CHANNEL",
    "EVERY_SUBSCRIPTION",
    "Ask",
    "Paged",
    "all_channels",
    "all_subscriptions",
    "pages",
    "sync_pages",
]

Page = TypeVar("Page")


class Paged(Protocol[Page]):
    """A list request: ``following(page)`` asks for the page after ``page``, or is None."""

    def following(self, page: Any) -> Paged[Page] | None: ...


Ask = Callable[[Any], Awaitable[Any]]  # sends one request to the store, returns its reply

# The lists without filters, in the largest pages (fewer round trips).
EVERY_CHANNEL = st.ListChannels(limit=st.MAX_PAGE)
EVERY_SUBSCRIPTION = st.ListSubscriptions(limit=st.MAX_PAGE)


async def pages(ask: Ask, request: Paged[Page]) -> AsyncIterator[Page]:
    """Every page of ``request``'s list, in order. Raises what ``ask`` raises."""
    following: Paged[Page] | None = request
    while following is not None:
        page = await ask(following)
        yield page
        following = following.following(page)


def sync_pages(ask: Callable[[Any], Any], request: Paged[Page]) -> Iterator[Page]:
    """:func:`pages` for a blocking ``ask`` (a ``runtime.client.Client``)."""
    following: Paged[Page] | None = request
    while following is not None:
        page = ask(following)
        yield page
        following = following.following(page)


async def all_channels(
    ask: Ask, request: st.ListChannels = EVERY_CHANNEL
) -> list[st.Channel]:
    """Every channel ``request`` lists, in id order, walking its pages."""
    return [c async for page in pages(ask, request) for c in page.channels]


async def all_subscriptions(
    ask: Ask, request: st.ListSubscriptions = EVERY_SUBSCRIPTION
) -> list[st.Subscription]:
    """Every subscription ``request`` lists, in ``(subscriber, channel_id)`` order."""
    return [s async for page in pages(ask, request) for s in page.subscriptions]
