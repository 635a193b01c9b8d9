"""Channels and posts over HTTP, end to end: adding a channel reaches the parser (which
joins it with its reader and backfills) and the store; its posts are then paged, found by
search and followed by sequence, a live post arrives the same way, and the metrics move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import ClientSession
from prometheus_client.parser import text_string_to_metric_families

from protocols import store
from tests.api.conftest import CHANNEL, POSTS, TOKEN, ApiSystem
from tests.api.test_http import eventually
from tests.browser import screenshot

if TYPE_CHECKING:
    from playwright.async_api import Page


async def _json(http: ClientSession, path: str, status: int = 200) -> Any:
    response = await http.get(path)
    assert response.status == status, (path, await response.text())
    return await response.json()


async def _metric(http: ClientSession, name: str) -> float:
    text = await (await http.get("/metrics")).text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


async def test_a_channel_added_over_http_is_stored_paged_searched_and_followed(
    api_system: ApiSystem, browser_page: Page
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with ClientSession(api_system.url, headers=headers) as http:
        assert await _metric(http, "switchboard_posts_stored_total") == 0
        added = await http.post("/channels", json={"ref": f"@{CHANNEL}", "backfill": 10})
        body = await added.json()
        assert added.status == 201, body
        channel_id = body["channel"]["id"]
        assert body["backfilled"] == len(POSTS) and body["channel"]["reader"] == "alice"
        again = await http.post("/channels", json={"ref": f"@{CHANNEL}"})
        assert again.status == 200 and (await again.json())["created"] is False

        listed = await _json(http, "/channels")
        assert [c["id"] for c in listed["channels"]] == [channel_id]
        one = await _json(http, f"/channels/{channel_id}")
        assert one["username"] == CHANNEL and one["state"] == "active"

        # Newest first by message id, 2 per page; the next page starts before the last id.
        first = (await _json(http, f"/channels/{channel_id}/posts?limit=2"))["posts"]
        assert [p["text"] for p in first] == [POSTS[2], POSTS[1]]
        rest = await _json(
            http, f"/channels/{channel_id}/posts?before_id={first[-1]['message_id']}"
        )
        assert [p["text"] for p in rest["posts"]] == [POSTS[0]]

        found = await _json(http, "/posts/search?q=otters")
        assert sorted(p["text"] for p in found["posts"]) == sorted([POSTS[0], POSTS[2]])

        since = await _json(http, "/posts/since?seq=0")
        seqs = [p["seq"] for p in since["posts"]]
        assert len(seqs) == len(POSTS) and seqs == sorted(seqs)
        assert (await _json(http, f"/posts/since?seq={seqs[-1]}"))["posts"] == []

        # A live post reaches the store through the reader, the parser and the bus.
        api_system.sandbox.control.post(CHANNEL, "a live post about zebras")

        async def stored_live() -> bool:
            return bool((await _json(http, "/posts/search?q=zebras"))["posts"])

        await eventually(stored_live, 30, "the live post to be stored")
        newer = await _json(http, f"/posts/since?seq={seqs[-1]}")
        assert [p["text"] for p in newer["posts"]] == ["a live post about zebras"]

        async def counted() -> bool:  # status figures are up to a second old
            return await _metric(http, "switchboard_posts_stored_total") == len(POSTS) + 1

        await eventually(counted, 10, "the stored posts to be counted")

        async def seen_on_the_bus() -> bool:
            return await _metric(http, "switchboard_posts_seen_total") >= 1

        await eventually(seen_on_the_bus, 10, "the API to see a PostStored event")

        await browser_page.goto(f"{api_system.url}/status")
        await browser_page.locator("td", has_text=CHANNEL).wait_for()
        assert await browser_page.locator("svg.chart rect.bar[height]:not([height='0'])").count()
        await screenshot(browser_page, "status_page_with_posts")

        with api_system.sessions.client() as client:
            client.request(
                "store:main", store.Subscribe(subscriber="bot:x:42", channel_id=channel_id)
            )
        subs = await _json(http, "/subscribers/bot:x:42/subscriptions")
        assert [s["channel_id"] for s in subs["subscriptions"]] == [channel_id]

        await _json(http, "/channels/-1009999999/posts", status=404)
        bad_search = await _json(http, '/posts/search?q="unbalanced', status=400)
        assert bad_search["code"] == "BadRequest"

        removed = await http.delete(f"/channels/{channel_id}")
        assert removed.status == 200, await removed.text()
        assert (await _json(http, "/channels"))["channels"] == []
