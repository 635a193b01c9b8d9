"""The login QR codes, read back by a real decoder (zbar) from what people see: the terminal
text as a light-on-dark terminal draws it, the SVG rendered over a dark page, and a page
served by aiohttp as headless Chromium shows it."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import segno
from aiohttp import web
from aiohttp.test_utils import TestServer

from actors.qr import to_svg, to_terminal
from tests.browser import screenshot
from tests.tools import svg_to_png, terminal_bitmap, token_of, write_png, zbar_decode

if TYPE_CHECKING:
    from playwright.async_api import Page


def login_url(token: bytes) -> str:
    """Telethon's QR login URL: the token in base64url without padding."""
    return "tg://login?token=" + base64.urlsafe_b64encode(token).decode().rstrip("=")


TOKENS = [hashlib.sha256(b"switchboard").digest(), bytes(range(256))[::3]]  # 32 and 86 bytes


@pytest.mark.parametrize("token", TOKENS, ids=["32-byte", "86-byte"])
def test_terminal_code_scans_to_the_login_token(tmp_path: Path, token: bytes) -> None:
    text = to_terminal(login_url(token))
    (decoded,) = zbar_decode(write_png(tmp_path / "terminal.png", terminal_bitmap(text)))
    assert decoded == login_url(token).encode()
    assert token_of(decoded) == token


@pytest.mark.parametrize("token", TOKENS, ids=["32-byte", "86-byte"])
def test_svg_code_scans_to_the_login_token_on_a_dark_page(tmp_path: Path, token: bytes) -> None:
    png = svg_to_png(to_svg(login_url(token)), tmp_path / "code.png", background="#000")
    (decoded,) = zbar_decode(png)
    assert token_of(decoded) == token


def test_non_ascii_text_survives_both_forms(tmp_path: Path) -> None:
    text = "Привет, мир"
    assert zbar_decode(write_png(tmp_path / "t.png", terminal_bitmap(to_terminal(text)))) == [
        text.encode()
    ]
    png = svg_to_png(to_svg(text), tmp_path / "s.png", background="#000")
    assert zbar_decode(png) == [text.encode()]


def test_terminal_text_is_plain_half_blocks_with_an_inked_quiet_zone() -> None:
    lines = to_terminal(login_url(TOKENS[0])).rstrip("\n").split("\n")
    assert {len(line) for line in lines} == {len(lines[0])}
    assert set("".join(lines)) <= set("█▀▄ ")  # no escape sequences: survives a pipe
    # Light modules are ink: the 4-module quiet zone is two full rows of full blocks, and
    # the finder pattern's dark ring starts right after four inked columns.
    assert lines[0] == lines[1] == "█" * len(lines[0])
    assert lines[2].startswith("████ ")


def test_svg_module_size_follows_scale() -> None:
    modules = segno.make_qr(login_url(TOKENS[0])).symbol_size(border=4)[0]
    assert f'width="{modules * 3}" height="{modules * 3}"' in to_svg(login_url(TOKENS[0]), 3)


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="scale"):
        to_svg("x", scale=0)
    with pytest.raises(segno.DataOverflowError):
        to_terminal("x" * 8000)


async def test_page_in_headless_chromium_shows_a_code_that_scans(browser_page: Page) -> None:
    token = TOKENS[0]

    async def login_page(request: web.Request) -> web.Response:
        # Dark, like a page in a dark theme: the code must bring its own light quiet zone.
        body = f"<h1>Log in</h1><p>Scan with Telegram</p>{to_svg(login_url(token))}"
        style = "body { background: #111; color: #eee; font-family: sans-serif }"
        html = f"<!doctype html><title>Log in</title><style>{style}</style>{body}"
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/login", login_page)
    async with TestServer(app, host="127.0.0.1") as server:
        await browser_page.goto(str(server.make_url("/login")))
        await browser_page.locator("svg.qr").wait_for()
        shot = await screenshot(browser_page, "qr_login_page")
    (decoded,) = zbar_decode(shot)
    assert token_of(decoded) == token
