"""The aiohttp application and the actor that serves it (``api:main``).

:func:`create_app` builds the app from a :class:`~actors.api.base.Requester` (the actor's
context, or an :class:`runtime.client.AsyncClient` in another program) and the settings;
the route table (:data:`ROUTES`) is the one list of endpoints, used for routing, for the
OpenAPI document and for deciding which endpoints need the token. One middleware:

* checks the bearer token (``Authorization: Bearer``, or the cookie the token form sets)
  on guarded routes, in constant time; without ``api.token`` configured they are refused;
* turns every refusal into an HTTP status and a JSON ``{code, message}``: ``BadRequest``
  400, ``Unauthorized`` 403, ``NotFound`` 404, ``Busy``/``FloodWait`` 429 with
  ``Retry-After``, ``Unavailable``/``NoSuchAddress``/``NotOwner`` 503, ``Timeout`` 504,
  anything else 500; aiohttp's own (404, 405, 413) get the same JSON shape.

:class:`ApiActor` runs the app on the process's shared asyncio loop and reaches every
other actor through its own context: it never opens a session file or a database.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from importlib import metadata
from typing import Any

import structlog
from aiohttp import web

from actors.api import login, rest
from actors.api.base import CLIENT, SETTINGS, Requester, Route, json_response
from actors.api.metrics import METRICS, MeteredClient, Metrics
from actors.api.openapi import openapi_document
from actors.api.pages import message_page, token_page
from actors.api.status import POST_RATE, STATUS, PostRate, StatusCache
from config import Settings
from protocols import errors
from protocols.api import ErrorBody
from protocols.base import Message, Request
from protocols.events import PostStored, stored_topic
from runtime.actor import Actor, ActorContext
from runtime.errors import RequestError
from runtime.handlers import handles
from runtime.loop import get_loop_thread

__all__ = ["ROUTES", "ApiActor", "create_app"]

log = structlog.get_logger("api")

MAX_BODY_BYTES = 64 * 1024
TOKEN_COOKIE = "switchboard_token"
_LOCAL_PATH = re.compile(r"/(?![/\\])[\w./-]*")
START_TIMEOUT_S = 10.0

_STATUS_OF: dict[type[errors.Error], int] = {
    errors.BadRequest: 400,
    errors.Unauthorized: 403,
    errors.NotFound: 404,
    errors.Busy: 429,
    errors.FloodWait: 429,
    errors.Unavailable: 503,
    errors.NoSuchAddress: 503,
    errors.NotOwner: 503,
    errors.Timeout: 504,
}

ROUTE_TABLE = web.AppKey("routes", dict)


async def openapi(request: web.Request) -> web.StreamResponse:
    return json_response(openapi_document(ROUTES, "Switchboard", _version()))


async def metrics(request: web.Request) -> web.StreamResponse:
    return await request.app[METRICS].expose(request, request.app[STATUS])


async def auth(request: web.Request) -> web.StreamResponse:
    """The token form's target: a right token sets the cookie and goes back to the page."""
    form = await request.post()
    target = str(form.get("next", "/status"))
    if not _LOCAL_PATH.fullmatch(target):  # never a redirect off this server
        target = "/status"
    refusal = _refusal(request, str(form.get("token", "")), target)
    if refusal is not None:
        return refusal
    response = web.Response(status=303, headers={"Location": target})
    response.set_cookie(
        TOKEN_COOKIE, str(form["token"]), httponly=True, samesite="Strict", path="/"
    )
    return response


ROUTES: tuple[Route, ...] = (
    *rest.ROUTES,
    Route("GET", "/metrics", metrics, "Prometheus metrics (text format)", content="text/plain"),
    Route("GET", "/openapi.json", openapi, "This document"),
    Route(
        "POST",
        "/auth",
        auth,
        "The token form (form fields token, next): sets a cookie",
        content="text/html",
    ),
    *login.ROUTES,
)


def _version() -> str:
    try:
        return metadata.version("switchboard")
    except metadata.PackageNotFoundError:
        return "0"


def _error(error: errors.Error, status: int | None = None) -> web.Response:
    status = status or _STATUS_OF.get(type(error), 500)
    retry = getattr(error, "retry_after", None)
    if isinstance(error, errors.Busy):
        retry = 1.0
    body = ErrorBody(code=type(error).__name__, message=error.message, retry_after=retry)
    response = json_response(body, status)
    if retry is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry)))
    return response


def _presented(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(TOKEN_COOKIE)


def _refusal(request: web.Request, given: str | None, page: str | None) -> web.Response | None:
    """None if ``given`` is the configured token; else the refusal (a page for ``page``)."""
    token = request.app[SETTINGS].api.token
    if token is None:
        text = "api.token is not configured: endpoints that change state are refused"
        if page is not None:
            return web.Response(
                text=message_page("Refused", text), status=403, content_type="text/html"
            )
        return _error(errors.Unauthorized(message=text))
    if not given:
        text, status = "an API token is required (Authorization: Bearer <api.token>)", 401
    elif hmac.compare_digest(given.encode(), token.reveal().encode()):
        return None
    else:
        text, status = "wrong API token", 403
    if page is not None:
        return web.Response(text=token_page(page, text), status=status, content_type="text/html")
    response = _error(errors.Unauthorized(message=text), status)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Token check on guarded routes; every refusal becomes a status and a JSON body."""
    info = request.match_info.route.resource
    key = (request.method, info.canonical if info is not None else "")
    route: Route | None = request.app[ROUTE_TABLE].get(key)
    try:
        if route is not None and route.guarded:
            page = request.path if route.content == "text/html" else None
            refusal = _refusal(request, _presented(request), page)
            if refusal is not None:
                return _count(request, key[1], refusal)
        response = await handler(request)
    except RequestError as exc:
        response = _error(exc.error)
        event = "request failed" if response.status >= 500 else "request refused"
        log.info(event, path=request.path, status=response.status, error=str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = ErrorBody(code=exc.reason.title().replace(" ", ""), message=exc.reason)
        response = json_response(body, exc.status)
        response.headers.update({k: v for k, v in exc.headers.items() if k == "Allow"})
    return _count(request, key[1], response)


def _count(request: web.Request, route: str, response: web.StreamResponse) -> web.StreamResponse:
    request.app[METRICS].http.labels(route or "unmatched", str(response.status)).inc()
    return response


def create_app(client: Requester, settings: Settings) -> web.Application:
    """The API as an aiohttp app: every endpoint of :data:`ROUTES`, served by ``client``.

    Requests through ``client`` are counted in the app's metrics. The app keeps no
    connection of its own: whoever owns ``client`` opens and closes it.
    """
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    rate = PostRate()
    app[METRICS] = Metrics(rate)
    app[CLIENT] = MeteredClient(client, app[METRICS])
    app[SETTINGS] = settings
    app[POST_RATE] = rate
    app[STATUS] = StatusCache(app[CLIENT], settings, rate)
    app[ROUTE_TABLE] = {}
    for route in ROUTES:
        added = app.router.add_route(route.method, route.path, route.handler)
        app[ROUTE_TABLE][(route.method, added.resource.canonical)] = route
    return app


class ContextClient:
    """An actor's context as a :class:`Requester`: requests are sent as the actor."""

    def __init__(self, ctx: ActorContext) -> None:
        self.ctx = ctx

    async def request(
        self, target: str, body: Request[Any], timeout: float = 10.0, idempotency_key: str = ""
    ) -> Message:
        return await self.ctx.call(target, body, timeout, idempotency_key)


async def _serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class ApiActor(Actor):
    """``api:main``: serves :func:`create_app` on ``api.host:api.port`` while it lives.

    ``on_start`` binds the port on the shared loop (raises OSError if it is taken, and the
    supervisor retries with backoff); ``on_stop`` closes the server. Stored posts seen on
    the bus feed the status page's chart.
    """

    def __init__(self, ctx: ActorContext, settings: Settings) -> None:
        super().__init__(ctx)
        self.settings = settings

    def on_start(self) -> None:
        self.app = create_app(ContextClient(self.ctx), self.settings)
        api = self.settings.api
        self.runner = get_loop_thread().run(_serve(self.app, api.host, api.port), START_TIMEOUT_S)
        self.ctx.subscribe(stored_topic())
        host, port = self.runner.addresses[0][:2]  # the bound port, also when api.port is 0
        self.ctx.log.info("api serving", host=host, port=port)

    def on_stop(self) -> None:
        get_loop_thread().run(self.runner.cleanup(), START_TIMEOUT_S)

    @handles(PostStored)
    async def stored(self, event: PostStored) -> None:
        self.app[POST_RATE].add(time.time())
