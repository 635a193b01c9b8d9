"""The HTTP API over a running system: every endpoint with good and bad input, the token,
the OpenAPI document, the metrics, the status page in a browser, and a killed API process.

The system is described in ``tests/api/conftest.py``; the channel and post endpoints with
good input are exercised end to end in ``test_channels.py``.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import jsonschema
import msgspec
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from actors.api import ROUTES, create_app
from actors.api.base import CLIENT
from config import load_settings
from protocols import session as s
from protocols import store
from protocols.api import StatusReport
from tests.api.conftest import TOKEN, ApiSystem
from tests.browser import screenshot
from tests.runtime.support import free_port, wait_until

if TYPE_CHECKING:
    from playwright.async_api import Page


async def _metrics(client: TestClient | ClientSession) -> dict[tuple[str, tuple[Any, ...]], float]:
    """The /metrics samples as {(name, sorted labels): value}, parsed by prometheus_client."""
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
    }


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll the coroutine ``predicate`` until it is true; AssertionError on timeout."""
    give_up = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < give_up, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)


def _asked(samples: dict[tuple[str, tuple[Any, ...]], float], kind: str) -> float:
    """How many requests of message type ``kind`` the API has sent."""
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "switchboard_requests_total" and ("type", kind) in labels
    )


async def test_health_ready_and_status_report_the_running_system(api_system: ApiSystem) -> None:
    async with ClientSession(api_system.url) as http:
        health = await http.get("/health")
        assert health.status == 200 and await health.json() == {"status": "ok"}

        ready = await http.get("/ready")
        body = await ready.json()
        assert ready.status == 200 and body["ready"] is True
        assert body["broker"] is True and body["store"] is True
        accounts = {a["account"]: a["authorized"] for a in body["accounts"]}
        assert accounts == {"alice": True, "bob": False, "carol": False}

        response = await http.get("/status", headers={"Accept": "application/json"})
        assert response.status == 200
        report = msgspec.json.decode(await response.read(), type=StatusReport)
    assert {n.node_id for n in report.nodes} == {"n1", "api1"}
    states = {a.address: a.state for a in report.actors}
    assert "api:main" in states and states["session:alice"] == "running"
    alice = next(a for a in report.accounts if a.account == "alice")
    assert alice.authorized and alice.user is not None and alice.user.id == api_system.alice.id
    assert report.problems == []
    assert report.store is not None and report.store.schema_version >= 1
    assert [r.account for r in report.readers] == ["alice"]
    assert len(report.posts_per_minute) == 30


async def test_status_page_in_a_browser(api_system: ApiSystem, browser_page: Page) -> None:
    response = await browser_page.goto(f"{api_system.url}/status")
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    await browser_page.locator("h1", has_text="Switchboard").wait_for()
    assert await browser_page.locator("svg.chart rect.bar").count() == 30
    actors = browser_page.locator("table", has=browser_page.locator("th", has_text="mailbox"))
    assert "session:alice" in await actors.inner_text()
    assert await browser_page.locator("p.ok", has_text="every part answered").count() == 1
    refresh = browser_page.locator('meta[http-equiv="refresh"]')
    assert await refresh.get_attribute("content") == "5"
    await screenshot(browser_page, "status_page")


async def test_openapi_document_validates_and_lists_every_route(api_system: ApiSystem) -> None:
    async with ClientSession(api_system.url) as http:
        doc = await (await http.get("/openapi.json")).json()
        report = await (await http.get("/status")).json()
        health = await (await http.get("/health")).json()
    validate(doc)  # OpenAPI 3.1, its schemas JSON Schema 2020-12
    assert doc["openapi"] == "3.1.0"
    served = {(r.method.lower(), r.path) for r in ROUTES}
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == served
    assert doc["paths"]["/channels"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/channels"]["get"]
    paged = {p["name"] for p in doc["paths"]["/channels"]["get"]["parameters"]}
    assert {"after_id", "limit"} <= paged
    subscriptions = doc["paths"]["/subscribers/{subscriber}/subscriptions"]["get"]
    assert {"after_channel_id", "limit"} <= {p["name"] for p in subscriptions["parameters"]}
    assert "more" in doc["components"]["schemas"]["Channels"]["properties"]
    # What the server sends validates against what the document says it sends.
    for body, name in ((report, "StatusReport"), (health, "Health")):
        schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        jsonschema.Draft202012Validator(schema).validate(body)
    bad = {"$ref": "#/components/schemas/NewChannel", "components": doc["components"]}
    assert not jsonschema.Draft202012Validator(bad).is_valid({"ref": "@x", "extra": 1})


async def test_channels_and_subscriptions_are_listed_a_page_at_a_time(
    api_system: ApiSystem, app_client: TestClient
) -> None:
    """Channels of a reader nobody runs (the parser never sees them), and one subscriber's
    subscriptions, walked over HTTP with a small limit and the cursor of each page."""
    ids = [-1007700 - n for n in range(12)]
    client = app_client.app[CLIENT]
    for channel_id in ids:
        channel = store.Channel(id=channel_id, reader="pager", state="paused")
        await client.request("store:main", store.SaveChannel(channel=channel), timeout=10)
        follow = store.Subscribe(subscriber="bot:pager:1", channel_id=channel_id)
        await client.request("store:main", follow, timeout=10)

    async def walk(path: str, rows: str, key: str, cursor: str) -> list[Any]:
        found: list[Any] = []
        pages: list[Any] = []
        query = ""
        for _ in range(4):  # three pages; a fourth would be a cursor that did not move
            response = await app_client.get(f"{path}limit=5{query}")
            assert response.status == 200, await response.text()
            page = await response.json()
            pages.append(page)
            found += [row[key] for row in page[rows]]
            if not page.get("more"):
                break
            query = f"&{cursor}={found[-1]}"
        assert [len(page[rows]) for page in pages] == [5, 5, 2]
        return found

    channels = await walk("/channels?reader=pager&", "channels", "id", "after_id")
    assert channels == sorted(ids)
    path = "/subscribers/bot:pager:1/subscriptions?"
    followed = await walk(path, "subscriptions", "channel_id", "after_channel_id")
    assert followed == sorted(ids)


async def test_metrics_parse_and_counters_move_as_requests_flow(api_system: ApiSystem) -> None:
    async with ClientSession(api_system.url) as http:
        before = await _metrics(http)
        assert (await http.get("/health")).status == 200
        after = await _metrics(http)
        key = ("switchboard_http_requests_total", (("route", "/health"), ("status", "200")))
        assert after[key] == before.get(key, 0) + 1
        assert after[("switchboard_mailbox_depth", (("address", "session:alice"),))] >= 0
        assert ("switchboard_account_authorized", (("account", "alice"),)) in after
        assert after[("switchboard_reconnects_total", (("account", "alice"),))] >= 0
        assert ("switchboard_posts_stored_total", ()) in after

        # The status figures are gathered again once the last report is a second old.
        async def asked_again() -> bool:
            return _asked(await _metrics(http), "GetSessionStatus") > _asked(
                after, "GetSessionStatus"
            )

        await eventually(asked_again, 10, "GetSessionStatus to be counted again")
    latency = [
        v
        for (n, labels), v in after.items()
        if n == "switchboard_request_seconds_count" and ("type", "GetStatus") in labels
    ]
    assert latency and latency[0] >= 1


async def test_changes_need_the_token_and_nothing_is_asked_without_it(
    app_client: TestClient,
) -> None:
    for method, path in (("POST", "/channels"), ("DELETE", "/channels/-1001234")):
        missing = await app_client.request(method, path, json={"ref": "@news"})
        assert missing.status == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        assert (await missing.json())["code"] == "Unauthorized"
        wrong = await app_client.request(
            method, path, json={"ref": "@news"}, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status == 403 and (await wrong.json())["message"] == "wrong API token"
    page = await app_client.get("/login/bob")
    assert page.status == 401 and "API token needed" in await page.text()
    qr = await app_client.post("/login/bob/qr")
    assert qr.status == 401
    samples = await _metrics(app_client)
    for kind in ("AddChannel", "RemoveChannel", "StartQrLogin"):
        assert _asked(samples, kind) == 0, kind

    # With the token the request goes through to the parser (which finds no such channel).
    through = await app_client.post(
        "/channels", json={"ref": "@nosuchchannel"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert through.status == 404 and (await through.json())["code"] == "NotFound"


async def test_without_a_configured_token_changes_and_login_pages_are_refused(
    api_system: ApiSystem,
) -> None:
    settings = load_settings(api_system.sessions.write_config(), env={})
    assert settings.api.token is None
    runtime_client = api_system.sessions.async_client()
    async with runtime_client, TestClient(TestServer(create_app(runtime_client, settings))) as c:
        for headers in ({}, {"Authorization": "Bearer anything"}):
            refused = await c.post("/channels", json={"ref": "@news"}, headers=headers)
            assert refused.status == 403
            assert "api.token is not configured" in (await refused.json())["message"]
            page = await c.get("/login/bob", headers=headers)
            assert page.status == 403 and "api.token is not configured" in await page.text()
        assert (await c.get("/health")).status == 200  # reading stays open
        assert _asked(await _metrics(c), "AddChannel") == 0


async def test_the_token_form_sets_a_cookie_and_only_redirects_here(
    app_client: TestClient,
) -> None:
    wrong = await app_client.post("/auth", data={"token": "nope", "next": "/login/bob"})
    assert wrong.status == 403 and "wrong API token" in await wrong.text()
    for target, lands in (
        ("/login/bob", "/login/bob"),
        ("//evil.example", "/status"),
        ("/\\evil.example", "/status"),
        ("https://evil.example", "/status"),
    ):
        right = await app_client.post(
            "/auth", data={"token": TOKEN, "next": target}, allow_redirects=False
        )
        assert right.status == 303 and right.headers["Location"] == lands, target
        cookie = right.cookies["switchboard_token"]
        assert cookie.value == TOKEN and cookie["httponly"] and cookie["samesite"] == "Strict"
    page = await app_client.get("/login/bob")  # the client now sends the cookie
    assert page.status == 200 and "Log in bob" in await page.text()


BAD_REQUESTS = [
    ("POST", "/channels", b"{not json", 400),
    ("POST", "/channels", b'{"ref": "@news", "extra": 1}', 400),
    ("POST", "/channels", b"{}", 400),
    ("POST", "/channels", b'{"ref": ""}', 400),
    ("POST", "/channels", b'{"ref": "@news", "backfill": "all"}', 400),
    ("POST", "/channels", b'{"ref": "' + b"x" * 70_000 + b'"}', 413),
    ("DELETE", "/channels/abc", b"", 400),
    ("GET", "/channels/abc/posts", b"", 400),
    ("GET", "/channels/0/posts", b"", 400),
    ("GET", "/channels/-1001/posts?limit=0", b"", 400),
    ("GET", "/channels/-1001/posts?before_id=x", b"", 400),
    ("GET", "/posts/search", b"", 400),
    ("GET", "/posts/search?q=" + "x" * 300, b"", 400),
    ("GET", "/posts/since?seq=-1", b"", 400),
    ("GET", "/posts/since?seq=1&limit=100000", b"", 400),
    ("GET", "/channels?limit=0", b"", 400),
    ("GET", "/channels?limit=1001", b"", 400),
    ("GET", "/channels?after_id=x", b"", 400),
    ("GET", "/subscribers/bot:x:1/subscriptions?limit=-1", b"", 400),
    ("GET", "/subscribers/bot:x:1/subscriptions?after_channel_id=1e3", b"", 400),
    ("POST", "/login/carol/code", b'{"code": 12345}', 400),
    ("POST", "/login/carol/password", b'{"password": "x", "remember": true}', 400),
    ("PUT", "/channels", b"{}", 405),
    ("GET", "/no/such/thing", b"", 404),
]


async def test_bad_input_is_refused_before_any_actor_is_asked(app_client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    for method, path, body, status in BAD_REQUESTS:
        response = await app_client.request(method, path, data=body, headers=headers)
        assert response.status == status, (method, path[:60], await response.text())
        error = await response.json()
        assert set(error) == {"code", "message", "retry_after"} and error["message"], error
    samples = await _metrics(app_client)
    kinds = ("AddChannel", "RemoveChannel", "GetPosts", "SearchPosts", "PostsSince")
    for kind in (*kinds, "ListSubscriptions"):
        assert _asked(samples, kind) == 0, kind
    for kind in ("SubmitCode", "SubmitPassword"):
        assert _asked(samples, kind) == 0, kind


async def test_a_flood_wait_is_a_429_with_retry_after_and_shows_in_the_metrics(
    api_system: ApiSystem,
) -> None:
    api_system.sandbox.control.flood("auth.sendCode", 300, count=1)
    async with ClientSession(api_system.url, headers=api_system.headers()) as http:
        response = await http.post("/login/carol/phone", json={"phone": api_system.carol_phone})
        body = await response.json()
        assert response.status == 429 and body["code"] == "FloodWait", body
        assert 290 < body["retry_after"] <= 300
        assert int(response.headers["Retry-After"]) == math.ceil(body["retry_after"])
        key = (
            "switchboard_flood_wait_seconds",
            (("account", "carol"), ("method", "sendCode")),
        )

        async def shown() -> bool:  # the method as the flood control names it
            return (await _metrics(http)).get(key, 0) > 200

        await eventually(shown, 10, "carol's flood wait in the metrics")


def _get(url: str) -> tuple[int, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_the_api_process_killed_and_restarted_serves_again(api_system: ApiSystem) -> None:
    sessions = api_system.sessions
    api_system.api.signal(signal.SIGKILL)
    api_system.api.popen.wait(10)
    with sessions.client() as client:
        # Nothing else is affected: alice's session actor answers as before.
        status = client.request("session:alice", s.GetSessionStatus(), timeout=10)
        assert status.authorized
        wait_until(
            lambda: "api:main" not in {a.address for a in sessions.status().addresses},
            15,
            "the dead API node's address to be released",
        )
    port = free_port()
    api_system.api = api_system.start_api("api2", port)
    code, health = _get(f"http://127.0.0.1:{port}/health")
    assert code == 200 and health == {"status": "ok"}
    _, report = _get(f"http://127.0.0.1:{port}/status")
    assert {n["node_id"] for n in report["nodes"]} == {"n1", "api2"}
