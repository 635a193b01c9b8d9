"""The QR codes people scan to log in: Telegram's login URL as terminal text and as SVG.

``python run.py login ACCOUNT --qr`` prints :func:`to_terminal`; the API's login page
embeds :func:`to_svg`. Both draw the same code (segno does the encoding: a regular QR
code, never a Micro QR, the error correction level raised as far as the size allows),
with the 4-module quiet zone the standard asks for, painted light, so the code scans
whatever colour surrounds it. Text is encoded as UTF-8, which scanners assume; left to
choose, segno would write some scripts (Cyrillic, for one) in Shift_JIS, which they misread.
"""

from __future__ import annotations

import io

import segno

__all__ = ["to_svg", "to_terminal"]


def _encode(data: str) -> segno.QRCode:
    return segno.make_qr(data, encoding="utf-8")


def to_terminal(data: str) -> str:
    """The QR code for ``data`` as lines of Unicode half blocks, two module rows per line.

    Light modules are the block ink and dark modules the terminal background, as
    ``qrencode -t UTF8`` draws them: on a light-on-dark terminal (the common setup) that is
    the dark-on-light code every scanner reads, its drawn quiet zone setting it off from the
    dark screen. The text has no escape sequences, so it survives a pipe or a log file.
    Every line has the same width; the text ends with a newline.

    Raises:
        segno.DataOverflowError: ``data`` does not fit the largest QR code.
    """
    out = io.StringIO()
    _encode(data).terminal(out=out, compact=True)
    return out.getvalue()


def to_svg(data: str, scale: int = 6) -> str:
    """The QR code for ``data`` as an ``<svg>`` element to embed in an HTML page.

    Each module is ``scale`` CSS pixels square. The element paints its own white
    background under the code and its quiet zone, so it scans on a page of any colour
    (dark themes included). It has no XML declaration and no namespace attribute: an HTML
    parser puts it in the SVG namespace.

    Raises:
        segno.DataOverflowError: ``data`` does not fit the largest QR code.
        ValueError: ``scale`` is not positive.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return _encode(data).svg_inline(scale=scale, dark="#000", light="#fff", svgclass="qr")
