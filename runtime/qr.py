"""A small QR Code encoder (ISO/IEC 18004:2015, model 2) and a terminal renderer.

``python run.py login ACCOUNT --qr`` shows Telegram's QR login URL
(``tg://login?token=<base64url>``, 40-80 bytes) in the terminal. The project's dependencies
are fixed, so this module encodes it itself: byte mode only, versions 1-10 (up to 271
bytes at level L, 213 at M), every error correction level, automatic mask choice. That
covers any login URL with ample room; longer data is refused rather than encoded wrongly.

Coordinates: ``matrix[row][col]``; True is a dark module. Section numbers refer to
ISO/IEC 18004:2015.
"""

from __future__ import annotations

__all__ = ["encode", "render", "to_terminal"]

MAX_VERSION = 10

# Error correction level -> its 2-bit indicator in the format information (section 7.9.1,
# Table 12). The indicators are not in L, M, Q, H order.
_ECC_BITS = {"L": 0b01, "M": 0b00, "Q": 0b11, "H": 0b10}

# Error correction block structure for versions 1-10 (section 7.5.1, Table 9):
# version -> level -> (EC codewords per block, ((block count, data codewords per block), ...)).
# Group 2 blocks, where present, hold one data codeword more than group 1 blocks.
_BLOCKS: dict[int, dict[str, tuple[int, tuple[tuple[int, int], ...]]]] = {
    1: {"L": (7, ((1, 19),)), "M": (10, ((1, 16),)), "Q": (13, ((1, 13),)), "H": (17, ((1, 9),))},
    2: {"L": (10, ((1, 34),)), "M": (16, ((1, 28),)), "Q": (22, ((1, 22),)), "H": (28, ((1, 16),))},
    3: {"L": (15, ((1, 55),)), "M": (26, ((1, 44),)), "Q": (18, ((2, 17),)), "H": (22, ((2, 13),))},
    4: {"L": (20, ((1, 80),)), "M": (18, ((2, 32),)), "Q": (26, ((2, 24),)), "H": (16, ((4, 9),))},
    5: {
        "L": (26, ((1, 108),)),
        "M": (24, ((2, 43),)),
        "Q": (18, ((2, 15), (2, 16))),
        "H": (22, ((2, 11), (2, 12))),
    },
    6: {"L": (18, ((2, 68),)), "M": (16, ((4, 27),)), "Q": (24, ((4, 19),)), "H": (28, ((4, 15),))},
    7: {
        "L": (20, ((2, 78),)),
        "M": (18, ((4, 31),)),
        "Q": (18, ((2, 14), (4, 15))),
        "H": (26, ((4, 13), (1, 14))),
    },
    8: {
        "L": (24, ((2, 97),)),
        "M": (22, ((2, 38), (2, 39))),
        "Q": (22, ((4, 18), (2, 19))),
        "H": (26, ((4, 14), (2, 15))),
    },
    9: {
        "L": (30, ((2, 116),)),
        "M": (22, ((3, 36), (2, 37))),
        "Q": (20, ((4, 16), (4, 17))),
        "H": (24, ((4, 12), (4, 13))),
    },
    10: {
        "L": (18, ((2, 68), (2, 69))),
        "M": (26, ((4, 43), (1, 44))),
        "Q": (24, ((6, 19), (2, 20))),
        "H": (28, ((6, 15), (2, 16))),
    },
}

# Row/column centres of the alignment patterns (Annex E, Table E.1); version 1 has none.
_ALIGNMENT = {
    1: (),
    2: (6, 18),
    3: (6, 22),
    4: (6, 26),
    5: (6, 30),
    6: (6, 34),
    7: (6, 22, 38),
    8: (6, 24, 42),
    9: (6, 26, 46),
    10: (6, 28, 50),
}

_BYTE_MODE = 0b0100  # mode indicator (section 7.4.1, Table 2)
_PAD_CODEWORDS = (0xEC, 0x11)  # alternate to fill the data capacity (section 7.4.10)
_FORMAT_GENERATOR = 0x537  # BCH(15,5) generator polynomial (section 7.9.1, Annex C)
_FORMAT_XOR_MASK = 0x5412  # keeps the format information from being all light (7.9.1)
_VERSION_GENERATOR = 0x1F25  # BCH(18,6) generator polynomial (section 7.10, Annex D)

# Mask conditions (section 7.8.2, Table 10): a module at (row i, column j) is inverted
# where the condition holds.
_MASKS = (
    lambda i, j: (i + j) % 2 == 0,
    lambda i, j: i % 2 == 0,
    lambda i, j: j % 3 == 0,
    lambda i, j: (i + j) % 3 == 0,
    lambda i, j: (i // 2 + j // 3) % 2 == 0,
    lambda i, j: (i * j) % 2 + (i * j) % 3 == 0,
    lambda i, j: ((i * j) % 2 + (i * j) % 3) % 2 == 0,
    lambda i, j: ((i + j) % 2 + (i * j) % 3) % 2 == 0,
)

# Penalty weights N1-N4 (section 7.8.3.1, Table 11).
_N1, _N2, _N3, _N4 = 3, 3, 40, 10
# Rule 3: a 1:1:3:1:1 finder-like run with 4 light modules on one side, either way round.
_FINDER_LIKE = (True, False, True, True, True, False, True, False, False, False, False)
_FINDER_LIKE_REVERSED = _FINDER_LIKE[::-1]


def _gf_tables() -> tuple[list[int], list[int]]:
    """Exponent and logarithm tables of GF(256) with the QR primitive polynomial 0x11D (7.5.2)."""
    exp = [0] * 512  # doubled so exp[log a + log b] needs no modulo
    log = [0] * 256
    value = 1
    for power in range(255):
        exp[power] = value
        log[value] = power
        value <<= 1
        if value & 0x100:
            value ^= 0x11D
    for power in range(255, 512):
        exp[power] = exp[power - 255]
    return exp, log


_EXP, _LOG = _gf_tables()


def _rs_generator(degree: int) -> list[int]:
    """Coefficients, highest power first, of the product of (x - a^i) for i < degree (7.5.2)."""
    poly = [1]
    for i in range(degree):
        nxt = [*poly, 0]  # poly * x
        for k, coef in enumerate(poly):  # ... minus (= plus, in GF(2^8)) poly * a^i
            if coef:
                nxt[k + 1] ^= _EXP[_LOG[coef] + i]
        poly = nxt
    return poly


def _rs_remainder(data: bytes, degree: int) -> bytes:
    """The ``degree`` Reed-Solomon error correction codewords for one block of ``data``.

    They are the remainder of data(x) * x^degree divided by the generator polynomial, so
    data followed by them is a codeword of the (len(data) + degree, len(data)) code.
    """
    generator = _rs_generator(degree)
    rem = [0] * degree
    for byte in data:
        factor = byte ^ rem[0]
        rem = [*rem[1:], 0]
        if factor:
            log_factor = _LOG[factor]
            for k in range(degree):
                rem[k] ^= _EXP[_LOG[generator[k + 1]] + log_factor]
    return bytes(rem)


def _data_capacity(version: int, ecc: str) -> int:
    """Number of data codewords of a symbol of this version and level."""
    _, groups = _BLOCKS[version][ecc]
    return sum(count * size for count, size in groups)


def _count_bits(version: int) -> int:
    """Width of the byte-mode character count indicator (section 7.4.1, Table 3)."""
    return 8 if version <= 9 else 16


def _fits(length: int, version: int, ecc: str) -> bool:
    """Whether ``length`` bytes in one byte-mode segment fit this version and level."""
    return 4 + _count_bits(version) + 8 * length <= 8 * _data_capacity(version, ecc)


def _data_codewords(data: bytes, version: int, ecc: str) -> bytes:
    """The data codeword sequence: one byte-mode segment, terminator, padding (7.4)."""
    capacity_bits = 8 * _data_capacity(version, ecc)
    bits: list[int] = []

    def put(value: int, width: int) -> None:
        bits.extend((value >> shift) & 1 for shift in range(width - 1, -1, -1))

    put(_BYTE_MODE, 4)
    put(len(data), _count_bits(version))
    for byte in data:
        put(byte, 8)
    # Terminator of up to four 0 bits, then 0 bits to the next codeword boundary (7.4.9).
    bits.extend([0] * min(4, capacity_bits - len(bits)))
    bits.extend([0] * (-len(bits) % 8))
    codewords = bytearray(
        int("".join(map(str, bits[k : k + 8])), 2) for k in range(0, len(bits), 8)
    )
    for k in range(capacity_bits // 8 - len(codewords)):
        codewords.append(_PAD_CODEWORDS[k % 2])
    return bytes(codewords)


def _final_message(data_codewords: bytes, version: int, ecc: str) -> bytes:
    """Split into blocks, add each block's EC codewords and interleave (7.5.2, 7.6).

    Data codewords are taken column by column across the blocks (group 1's shorter blocks
    simply run out first), then the EC codewords the same way.
    """
    ec_len, groups = _BLOCKS[version][ecc]
    blocks: list[bytes] = []
    start = 0
    for count, size in groups:
        for _ in range(count):
            blocks.append(data_codewords[start : start + size])
            start += size
    ec_blocks = [_rs_remainder(block, ec_len) for block in blocks]
    out = bytearray()
    for column in range(max(len(block) for block in blocks)):
        out.extend(block[column] for block in blocks if column < len(block))
    for column in range(ec_len):
        out.extend(block[column] for block in ec_blocks)
    return bytes(out)


def _format_bits(ecc: str, mask: int) -> int:
    """The 15-bit format information for a level and mask, BCH-protected and masked (7.9.1)."""
    value = _ECC_BITS[ecc] << 3 | mask
    rem = value
    for _ in range(10):
        rem = (rem << 1) ^ ((rem >> 9) * _FORMAT_GENERATOR)
    return (value << 10 | rem) ^ _FORMAT_XOR_MASK


def _version_bits(version: int) -> int:
    """The 18-bit version information for versions 7 and up, BCH-protected (7.10)."""
    rem = version
    for _ in range(12):
        rem = (rem << 1) ^ ((rem >> 11) * _VERSION_GENERATOR)
    return version << 12 | rem


class _Symbol:
    """A symbol under construction: module colours and which modules are function patterns."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.size = 17 + 4 * version
        self.dark = [[False] * self.size for _ in range(self.size)]
        self.function = [[False] * self.size for _ in range(self.size)]

    def set_function(self, row: int, col: int, dark: bool) -> None:
        self.dark[row][col] = dark
        self.function[row][col] = True

    def draw_function_patterns(self) -> None:
        """Timing, finder (with separators), alignment, version information, and a reserved
        format information area; everything but the data and the format information."""
        size = self.size
        # Timing patterns (6.3.5); the finders drawn next overwrite their ends.
        for k in range(size):
            self.set_function(6, k, k % 2 == 0)
            self.set_function(k, 6, k % 2 == 0)
        # Finder patterns and their light separators (6.3.3, 6.3.4): concentric squares,
        # dark at Chebyshev distance 0, 1, 3 from the centre, light at 2 and 4.
        for centre_row, centre_col in ((3, 3), (3, size - 4), (size - 4, 3)):
            for dr in range(-4, 5):
                for dc in range(-4, 5):
                    row, col = centre_row + dr, centre_col + dc
                    if 0 <= row < size and 0 <= col < size:
                        self.set_function(row, col, max(abs(dr), abs(dc)) not in (2, 4))
        # Alignment patterns (6.3.6): every pair of listed centres except the three that
        # would overlap a finder pattern.
        centres = _ALIGNMENT[self.version]
        last = len(centres) - 1
        for a, centre_row in enumerate(centres):
            for b, centre_col in enumerate(centres):
                if (a, b) in ((0, 0), (0, last), (last, 0)):
                    continue
                for dr in range(-2, 3):
                    for dc in range(-2, 3):
                        dark = max(abs(dr), abs(dc)) != 1
                        self.set_function(centre_row + dr, centre_col + dc, dark)
        # Reserve the format information area so data placement skips it.
        self.draw_format(0)
        if self.version >= 7:
            bits = _version_bits(self.version)
            # Two 6x3 blocks (7.10, Figure 27): bit k at row k // 3, column size - 11 + k % 3
            # above the lower-left finder's mirror, and transposed.
            for k in range(18):
                dark = (bits >> k) & 1 == 1
                self.set_function(k // 3, size - 11 + k % 3, dark)
                self.set_function(size - 11 + k % 3, k // 3, dark)

    def draw_format(self, bits: int) -> None:
        """Place the 15 format bits twice (7.9.1, Figure 25); bit 0 is the least significant."""
        size = self.size
        for k in range(15):
            dark = (bits >> k) & 1 == 1
            # Copy 1, around the upper-left finder, skipping the timing pattern at index 6.
            if k < 6:
                self.set_function(k, 8, dark)
            elif k < 8:
                self.set_function(k + 1, 8, dark)
            elif k == 8:
                self.set_function(8, 7, dark)
            else:
                self.set_function(8, 14 - k, dark)
            # Copy 2, split between the upper-right and lower-left finders.
            if k < 8:
                self.set_function(8, size - 1 - k, dark)
            else:
                self.set_function(size - 15 + k, 8, dark)
        # The dark module beside the lower-left finder (7.9.1) is always dark.
        self.set_function(size - 8, 8, True)

    def place_data(self, message: bytes) -> None:
        """Lay the message bits in the two-column zigzag from the lower right (7.7.3).

        Column pairs run right to left, upwards then downwards in turn, skipping the
        vertical timing column. Modules left over after the message (remainder bits) stay
        light, which is what the spec's 0-valued remainder bits are.
        """
        size = self.size
        bit_count = len(message) * 8
        index = 0
        right = size - 1
        while right >= 1:
            if right == 6:
                right = 5
            upward = (right + 1) & 2 == 0
            for step in range(size):
                row = size - 1 - step if upward else step
                for col in (right, right - 1):
                    if not self.function[row][col] and index < bit_count:
                        self.dark[row][col] = (message[index >> 3] >> (7 - (index & 7))) & 1 == 1
                        index += 1
            right -= 2

    def masked(self, mask: int, ecc: str) -> list[list[bool]]:
        """A copy with ``mask`` applied to the non-function modules and its format bits."""
        condition = _MASKS[mask]
        symbol = _Symbol(self.version)
        symbol.function = [line[:] for line in self.function]
        symbol.dark = [
            [
                dark != (not self.function[row][col] and condition(row, col))
                for col, dark in enumerate(line)
            ]
            for row, line in enumerate(self.dark)
        ]
        symbol.draw_format(_format_bits(ecc, mask))
        return symbol.dark


def _penalty(matrix: list[list[bool]]) -> int:
    """The mask evaluation score of a finished symbol (7.8.3.1, Table 11); lower is better.

    Rule 3 looks for the finder-like pattern inside the symbol only, counting each
    occurrence of 1011101 with four light modules on one side (so both sides count twice);
    rule 4 scores each full 5 % step away from 50 % dark. These are the readings used by
    ZXing and by the ``qrcode`` package; the spec's wording admits others (some encoders
    also count the quiet zone as light). Any mask decodes: the score only picks the one
    least likely to confuse a reader.
    """
    size = len(matrix)
    columns = [[matrix[row][col] for row in range(size)] for col in range(size)]
    score = 0
    for line in (*matrix, *columns):
        run = 1
        for k in range(1, size + 1):
            if k < size and line[k] == line[k - 1]:
                run += 1
                continue
            if run >= 5:
                score += _N1 + run - 5
            run = 1
        for k in range(size - 10):
            window = tuple(line[k : k + 11])
            if window in (_FINDER_LIKE, _FINDER_LIKE_REVERSED):
                score += _N3
    for row in range(size - 1):
        for col in range(size - 1):
            colour = matrix[row][col]
            if (
                matrix[row][col + 1] == colour
                and matrix[row + 1][col] == colour
                and matrix[row + 1][col + 1] == colour
            ):
                score += _N2
    dark = sum(map(sum, matrix))
    total = size * size
    score += _N4 * (abs(20 * dark - 10 * total) // total)
    return score


def _as_bytes(data: bytes | str) -> bytes:
    # A str goes in as UTF-8 without an ECI header: the spec's default for byte mode is
    # ISO 8859-1, but readers detect UTF-8, and login URLs are ASCII anyway.
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _check_ecc(ecc: str) -> None:
    if ecc not in _ECC_BITS:
        raise ValueError(f"unknown error correction level {ecc!r}; expected one of L, M, Q, H")


def _build(data: bytes, version: int, ecc: str, mask: int | None) -> list[list[bool]]:
    """The symbol for ``data`` at exactly this version and level, with ``mask`` or, if None,
    the mask with the lowest penalty (ties go to the lowest mask number)."""
    symbol = _Symbol(version)
    symbol.draw_function_patterns()
    symbol.place_data(_final_message(_data_codewords(data, version, ecc), version, ecc))
    if mask is not None:
        return symbol.masked(mask, ecc)
    candidates = [symbol.masked(m, ecc) for m in range(len(_MASKS))]
    return min(candidates, key=_penalty)


def encode(data: bytes | str, ecc: str = "M") -> list[list[bool]]:
    """Encode ``data`` as a QR Code symbol and return its module matrix.

    ``data`` goes into a single byte-mode segment (a str as UTF-8). The result is the
    smallest version (1-10) that holds it at error correction level ``ecc`` ("L", "M",
    "Q" or "H"), masked with whichever of the 8 masks scores lowest under the standard
    penalty rules. It is a square list of ``17 + 4 * version`` rows of booleans, True for a
    dark module, ``matrix[row][col]``, without a quiet zone.

    Raises:
        ValueError: ``ecc`` is not one of L, M, Q, H, or the data is longer than a
            version 10 symbol holds at that level.
    """
    _check_ecc(ecc)
    raw = _as_bytes(data)
    for version in range(1, MAX_VERSION + 1):
        if _fits(len(raw), version, ecc):
            return _build(raw, version, ecc, None)
    limit = (8 * _data_capacity(MAX_VERSION, ecc) - 4 - _count_bits(MAX_VERSION)) // 8
    raise ValueError(
        f"{len(raw)} bytes do not fit a version {MAX_VERSION} QR code at error correction "
        f"level {ecc} (at most {limit} bytes)"
    )


# Half-block glyph for (upper module light, lower module light). Light modules are the
# glyph's ink, dark modules the terminal background.
_GLYPHS = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}


def render(matrix: list[list[bool]], quiet_zone: int = 2) -> str:
    """Draw a module matrix as terminal text, two module rows per line, one column each.

    Light modules are drawn as block ink and dark modules left as background, as
    ``qrencode -t UTF8`` and most QR-in-terminal tools do. On a light-on-dark terminal (the
    common setup, and the one those tools assume) that shows dark modules on a light field,
    the polarity every scanner reads, and the drawn quiet zone sets the code off from the
    dark screen around it. Drawing dark modules as ink instead would be right only on
    dark-on-light terminals. There (macOS Terminal's default profile, for one) this text
    shows an inverted code, which many but not all scanners read. ``quiet_zone`` light
    modules are added on every side (the spec asks for 4; 2 keeps the code small and still
    scans). When the row count is odd, the last line's lower half is drawn light, a little
    extra quiet zone.

    The result has no trailing newline; every line has the same number of characters.

    Raises:
        ValueError: ``matrix`` is empty or not square, or ``quiet_zone`` is negative.
    """
    size = len(matrix)
    if size == 0 or any(len(row) != size for row in matrix):
        raise ValueError("matrix must be a non-empty square list of rows")
    if quiet_zone < 0:
        raise ValueError(f"quiet_zone must be >= 0, got {quiet_zone}")
    width = size + 2 * quiet_zone
    light_row = [True] * width
    padding = [True] * quiet_zone
    light = [light_row] * quiet_zone
    light += [padding + [not dark for dark in row] + padding for row in matrix]
    light += [light_row] * quiet_zone
    if len(light) % 2:
        light.append(light_row)
    return "\n".join(
        "".join(_GLYPHS[upper, lower] for upper, lower in zip(top, bottom, strict=True))
        for top, bottom in zip(light[0::2], light[1::2], strict=True)
    )


def to_terminal(data: bytes | str, ecc: str = "M") -> str:
    """``render(encode(data, ecc))``: the QR code for ``data`` as terminal text.

    Raises:
        ValueError: as :func:`encode`.
    """
    return render(encode(data, ecc))
