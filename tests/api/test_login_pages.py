"""The login pages against the sandbox: QR login and its two-step password step in headless
Chromium, and phone-code login over HTTP, each through the account's session actor.

The phone that accepts a QR login is an unmodified Telethon client logged in to the
sandbox as the same user; the QR code is read back from the page's screenshot by zbar.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import ClientSession
from telethon.tl import functions

from protocols import session as s
from sandbox.client import new_client
from tests.api.conftest import HINT, PASSWORD, TOKEN, ApiSystem
from tests.browser import screenshot
from tests.session.support import Phones
from tests.tools import token_of, zbar_decode

if TYPE_CHECKING:
    from playwright.async_api import Page


async def _enter_token(page: Page, url: str) -> None:
    """Open ``url``, which asks for the API token first, and give it."""
    response = await page.goto(url)
    assert response is not None and response.status == 401
    await page.locator("input[name=token]").fill(TOKEN)
    await page.locator("button[type=submit]").click()
    await page.locator("h1", has_text="Log in").wait_for()


async def _shown_url(page: Page) -> str:
    """The login URL the page's QR code holds, read from a screenshot by zbar."""
    shot = await screenshot(page, "login_page")
    (url,) = zbar_decode(shot)
    assert url.decode() == await page.locator("#qr-url").inner_text()
    return url.decode()


async def test_qr_login_with_two_step_password_in_a_browser(
    api_system: ApiSystem, phones: Phones, browser_page: Page
) -> None:
    sandbox = api_system.sandbox
    phone_client = phones.log_in(api_system.bob_phone)  # Bob's phone, already logged in
    sandbox.control.set_password(api_system.bob.id, PASSWORD, HINT)
    sandbox.control.set_limits(login_token_ttl=3)
    page = browser_page
    await _enter_token(page, f"{api_system.url}/login/bob")
    assert "bob is not logged in" in await page.locator("#state").inner_text()

    await page.locator("#qr-start").click()
    await page.locator("#qr svg.qr").wait_for()
    first = await page.locator("#qr-url").inner_text()
    # The token rotates: the page shows each new code without being told to.
    await page.wait_for_function(
        "(first) => document.getElementById('qr-url').textContent !== first",
        arg=first,
        timeout=15_000,
    )
    sandbox.control.set_limits(login_token_ttl=60)
    second = await page.locator("#qr-url").inner_text()
    await page.wait_for_function(
        "(second) => document.getElementById('qr-url').textContent !== second",
        arg=second,
        timeout=15_000,
    )  # a code issued with the long lifetime, which the phone has time to accept

    url = await _shown_url(page)
    phones.run(phone_client(functions.auth.AcceptLoginTokenRequest(token_of(url))))

    await page.locator("#password-form").wait_for(state="visible")
    assert HINT in await page.locator("#hint").inner_text()
    await page.locator("#password").fill("wrong password")
    await page.locator("#password-form button").click()
    await page.locator("#message.error", has_text="Wrong password").wait_for()
    await screenshot(page, "login_page_password")

    await page.locator("#password").fill(PASSWORD)
    await page.locator("#password-form button").click()
    await page.locator("#message.success", has_text="Login succeeded").wait_for()
    assert "Bob" in await page.locator("#message").inner_text()
    await screenshot(page, "login_page_done")
    with api_system.sessions.client() as client:
        me = client.request("session:bob", s.GetMe(), timeout=10)
    assert me.user.id == api_system.bob.id


async def _ask_code_elsewhere(phones: Phones, api_system: ApiSystem, phone: str) -> None:
    """Another device asks a login code for ``phone``: earlier codes expire."""

    async def ask() -> None:
        other = new_client(api_system.sandbox)
        phones.clients.append(other)
        await other.connect()
        await other.send_code_request(phone)

    phones.run(ask())


async def test_phone_code_login_over_http_with_clear_errors(
    api_system: ApiSystem, phones: Phones
) -> None:
    sandbox = api_system.sandbox
    phone = api_system.carol_phone
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with ClientSession(api_system.url, headers=headers) as http:
        sent = await http.post("/login/carol/phone", json={"phone": phone})
        assert sent.status == 200 and (await sent.json())["state"] == "code_sent"
        code = sandbox.control.last_login_code(phone)
        assert code
        wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
        refused = await http.post("/login/carol/code", json={"code": wrong})
        assert refused.status == 400
        assert (await refused.json())["message"].startswith("Wrong code.")

        await _ask_code_elsewhere(phones, api_system, phone)
        expired = await http.post("/login/carol/code", json={"code": code})
        assert expired.status == 400
        assert (await expired.json())["message"].startswith("This code has expired.")

        assert (await http.post("/login/carol/phone", json={"phone": phone})).status == 200
        step = await http.post(
            "/login/carol/code", json={"code": sandbox.control.last_login_code(phone)}
        )
        needed = await step.json()
        assert needed["state"] == "password_needed" and needed["hint"] == HINT
        bad = await http.post("/login/carol/password", json={"password": "nope"})
        assert bad.status == 400
        assert (await bad.json())["message"] == "Wrong password. Try again. (PASSWORD_HASH_INVALID)"
        done = await http.post("/login/carol/password", json={"password": PASSWORD})
        body = await done.json()
        assert done.status == 200 and body["state"] == "done"
        assert body["user"]["first_name"] == "Carol"

        unknown = await http.post("/login/nobody/phone", json={"phone": phone})
        assert unknown.status == 404
        assert (await unknown.json())["message"] == "no user account named 'nobody' is configured"
        page = await http.get("/login/nobody")
        assert page.status == 404 and "no user account named" in await page.text()
