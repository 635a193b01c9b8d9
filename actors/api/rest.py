"""The JSON endpoints: health, readiness, status, channels, posts and subscriptions.

Each handler checks its input, sends one typed request to the actor that owns the data
(the store for reads, the parser for adding and removing channels) and encodes the reply
as it came: the reply types are the OpenAPI schemas. ``/status`` answers HTML to a client
that asks for it (a browser) and JSON otherwise.
"""

from __future__ import annotations

from aiohttp import web

from actors.api.base import (
    CLIENT,
    PARSER,
    STORE,
    Param,
    Route,
    bad_request,
    json_response,
    path_id,
    query_int,
    read_json,
)
from actors.api.pages import status_page
from actors.api.status import STATUS
from protocols import parser, store
from protocols.api import AccountReady, Health, NewChannel, Readiness, StatusReport

__all__ = ["ROUTES"]

ADD_TIMEOUT_S = 60.0  # joining and backfilling a channel takes Telegram round trips
MAX_QUERY = 256
_ID_MAX = 2**63 - 1  # channel ids are 64-bit


async def health(request: web.Request) -> web.StreamResponse:
    return json_response(Health())


async def ready(request: web.Request) -> web.StreamResponse:
    report = await request.app[STATUS].get()
    broker_ok = report.broker_uptime_s > 0
    store_ok = report.store is not None
    readiness = Readiness(
        ready=broker_ok and store_ok,
        broker=broker_ok,
        store=store_ok,
        accounts=[
            AccountReady(account=a.account, state=a.state, authorized=a.authorized)
            for a in report.accounts
        ],
    )
    return json_response(readiness, 200 if readiness.ready else 503)


def _wants_html(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]


async def status(request: web.Request) -> web.StreamResponse:
    report = await request.app[STATUS].get()
    if _wants_html(request):
        return web.Response(text=status_page(report), content_type="text/html")
    return json_response(report)


async def list_channels(request: web.Request) -> web.StreamResponse:
    query = store.ListChannels(
        reader=request.query.get("reader", ""),
        state=request.query.get("state", ""),
        after_id=query_int(request, "after_id", 0, -_ID_MAX, _ID_MAX),
        limit=query_int(request, "limit", store.LIST_PAGE, 1, store.MAX_PAGE),
    )
    return json_response(await request.app[CLIENT].request(STORE, query))


async def add_channel(request: web.Request) -> web.StreamResponse:
    form = await read_json(request, NewChannel)
    added = await request.app[CLIENT].request(
        PARSER,
        parser.AddChannel(ref=form.ref, by="api", backfill=form.backfill),
        timeout=ADD_TIMEOUT_S,
    )
    return json_response(added, 201 if added.created else 200)


async def get_channel(request: web.Request) -> web.StreamResponse:
    query = store.GetChannel(channel_id=path_id(request))
    return json_response(await request.app[CLIENT].request(STORE, query))


async def remove_channel(request: web.Request) -> web.StreamResponse:
    body = parser.RemoveChannel(ref=str(path_id(request)), by="api")
    return json_response(await request.app[CLIENT].request(PARSER, body, timeout=ADD_TIMEOUT_S))


async def channel_posts(request: web.Request) -> web.StreamResponse:
    query = store.GetPosts(
        channel_id=path_id(request),
        before_id=query_int(request, "before_id", 0, 0, 2**31),
        limit=query_int(request, "limit", 50, 1, store.MAX_PAGE),
    )
    return json_response(await request.app[CLIENT].request(STORE, query))


async def search_posts(request: web.Request) -> web.StreamResponse:
    text = request.query.get("q", "").strip()
    if not text or len(text) > MAX_QUERY:
        raise bad_request(f"q must be 1 to {MAX_QUERY} characters of search text")
    query = store.SearchPosts(
        query=text,
        channel_id=query_int(request, "channel_id", 0, -(2**62), 2**62),
        limit=query_int(request, "limit", 50, 1, store.MAX_PAGE),
    )
    return json_response(await request.app[CLIENT].request(STORE, query))


async def posts_since(request: web.Request) -> web.StreamResponse:
    channel = query_int(request, "channel_id", 0, -(2**62), 2**62)
    query = store.PostsSince(
        after_seq=query_int(request, "seq", 0, 0, 2**62),
        limit=query_int(request, "limit", 100, 1, store.MAX_PAGE),
        channel_ids=[channel] if channel else [],
    )
    return json_response(await request.app[CLIENT].request(STORE, query))


async def subscriptions(request: web.Request) -> web.StreamResponse:
    query = store.ListSubscriptions(
        subscriber=request.match_info["subscriber"],
        after_channel_id=query_int(request, "after_channel_id", 0, -_ID_MAX, _ID_MAX),
        limit=query_int(request, "limit", store.LIST_PAGE, 1, store.MAX_PAGE),
    )
    return json_response(await request.app[CLIENT].request(STORE, query))


_ID = Param("id", "path", required=True, description="the channel's marked id (-100...)")
_LIMIT = Param("limit", "query", description="page size (default 50)")
_LIST_LIMIT = Param(
    "limit", "query", description=f"page size (default {store.LIST_PAGE}, at most {store.MAX_PAGE})"
)
_CHANNEL = Param("channel_id", "query", description="only this channel")

ROUTES = (
    Route("GET", "/health", health, "The API process is up", Health),
    Route(
        "GET",
        "/ready",
        ready,
        "Broker reachable, store ready, accounts authorized (503 if not ready)",
        Readiness,
    ),
    Route(
        "GET",
        "/status",
        status,
        "The whole system (HTML when the client asks for it)",
        StatusReport,
    ),
    Route(
        "GET",
        "/channels",
        list_channels,
        "Watched channels in id order, a page at a time; while more is true, the next page "
        "is after_id = the last id of this one",
        store.Channels,
        params=(
            Param("reader", "query", "string"),
            Param("state", "query", "string"),
            Param("after_id", "query", description="after this channel id (default: the first)"),
            _LIST_LIMIT,
        ),
    ),
    Route(
        "POST",
        "/channels",
        add_channel,
        "Watch a channel (201 when it is new)",
        parser.ChannelAdded,
        NewChannel,
        guarded=True,
    ),
    Route("GET", "/channels/{id}", get_channel, "One channel", store.Channel, params=(_ID,)),
    Route(
        "DELETE",
        "/channels/{id}",
        remove_channel,
        "Stop watching a channel",
        parser.ChannelRemoved,
        params=(_ID,),
        guarded=True,
    ),
    Route(
        "GET",
        "/channels/{id}/posts",
        channel_posts,
        "A channel's posts, newest first by message id; the next page is before_id = the "
        "last id of this one",
        store.Posts,
        params=(_ID, Param("before_id", "query", description="older than this id"), _LIMIT),
    ),
    Route(
        "GET",
        "/posts/search",
        search_posts,
        "Full-text search, newest first",
        store.Posts,
        params=(Param("q", "query", "string", True, "FTS5 query"), _CHANNEL, _LIMIT),
    ),
    Route(
        "GET",
        "/posts/since",
        posts_since,
        "Posts changed after seq, in seq order: the durable cursor",
        store.Posts,
        params=(Param("seq", "query", description="the last seq processed"), _CHANNEL, _LIMIT),
    ),
    Route(
        "GET",
        "/subscribers/{subscriber}/subscriptions",
        subscriptions,
        "A subscriber's subscriptions in channel id order, a page at a time; while more is "
        "true, the next page is after_channel_id = the last channel_id of this one",
        store.Subscriptions,
        params=(
            Param("subscriber", "path", "string", True),
            Param("after_channel_id", "query", description="after this channel id"),
            _LIST_LIMIT,
        ),
    ),
)
