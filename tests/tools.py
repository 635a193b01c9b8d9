"""Outside programs the tests drive, and reading QR codes with a real decoder (zbar).

``.ci/tools`` installs every program named here. Where one is missing a test is skipped
with the command that installs it, except in CI (``CI=true``), where it fails: CI must
never pass by skipping.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qs, urlsplit

import pytest

Bitmap = list[list[bool]]  # rows of pixels (or modules), True = light

# Terminal half-block glyph -> (upper half light, lower half light), as a terminal draws
# it in light ink on a dark background.
_HALVES = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason`` (something it needs is not installed); in CI, fail it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must install it", pytrace=False)
    pytest.skip(reason)


def require(program: str, package: str) -> str:
    """The path of ``program``; :func:`unavailable` when it is not installed.

    ``package`` is the Debian package that provides it, named in the message.
    """
    path = shutil.which(program)
    if path is None:
        unavailable(f"{program} is not installed: apt-get install {package} (or run .ci/tools)")
    return path


def zbar_decode(image: Path) -> list[bytes]:
    """Every QR code zbarimg finds in ``image`` (a PNG), as raw bytes; fails if none."""
    zbarimg = require("zbarimg", "zbar-tools")
    done = subprocess.run(
        [zbarimg, "--quiet", "--raw", "-Sbinary", str(image)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"zbarimg found no code in {image}: {done.stderr!r}"
    return [code for code in done.stdout.split(b"\n") if code]


def token_of(url: bytes | str) -> bytes:
    """The login token a scanning app reads from Telegram's ``tg://login?token=...`` URL."""
    text = url.decode() if isinstance(url, bytes) else url
    (encoded,) = parse_qs(urlsplit(text).query)["token"]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


def svg_to_png(svg: str, path: Path, background: str) -> Path:
    """Render a standalone copy of an inline ``<svg>`` element to ``path`` over ``background``.

    The namespace is added as an HTML parser would put the element in it.
    """
    rsvg = require("rsvg-convert", "librsvg2-bin")
    source = path.with_suffix(".svg")
    source.write_text(svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))
    subprocess.run(
        [rsvg, "--background-color", background, "-o", str(path), str(source)],
        check=True,
        timeout=60,
    )
    return path


def terminal_bitmap(text: str, margin: int = 8) -> Bitmap:
    """How half-block terminal text looks on a dark screen: one pixel per half cell.

    ``margin`` cells of dark screen surround the text. Raises KeyError on a character
    that is not a half-block glyph or a space.
    """
    rows: Bitmap = []
    for line in text.rstrip("\n").split("\n"):
        cells = [_HALVES[char] for char in line]
        rows.append([upper for upper, _ in cells])
        rows.append([lower for _, lower in cells])
    width = max(len(row) for row in rows) + 2 * margin
    screen = [[False] * width for _ in range(margin)]
    body = [[False] * margin + row + [False] * (width - margin - len(row)) for row in rows]
    return screen + body + screen


def write_png(path: Path, bitmap: Bitmap, scale: int = 4) -> Path:
    """An 8-bit greyscale PNG of ``bitmap``, each pixel drawn ``scale`` pixels square."""
    rows = b"".join(
        b"\x00" + bytes(255 if light else 0 for light in row for _ in range(scale))
        for row in bitmap
        for _ in range(scale)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", len(bitmap[0]) * scale, len(bitmap) * scale, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path
