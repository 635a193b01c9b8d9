"""QR encoder: matrices equal to an independent encoder's, structure per ISO/IEC 18004, and
codes that a real decoder reads back, from the matrix and from the terminal text."""

from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from types import ModuleType

import pytest

from runtime import qr

Matrix = list[list[bool]]

LEVELS = "LMQH"
# Byte-mode capacity per version 1-10 and level L, M, Q, H (ISO/IEC 18004:2015, Table 7).
CAPACITY = {
    1: (17, 14, 11, 7),
    2: (32, 26, 20, 14),
    3: (53, 42, 32, 24),
    4: (78, 62, 46, 34),
    5: (106, 84, 60, 44),
    6: (134, 106, 74, 58),
    7: (154, 122, 86, 64),
    8: (192, 152, 108, 84),
    9: (230, 180, 130, 98),
    10: (271, 213, 151, 119),
}
# Total codewords and remainder bits per version (Table 1).
TOTAL_CODEWORDS = {1: 26, 2: 44, 3: 70, 4: 100, 5: 134, 6: 172, 7: 196, 8: 242, 9: 292, 10: 346}
REMAINDER_BITS = {1: 0, 2: 7, 3: 7, 4: 7, 5: 7, 6: 7, 7: 0, 8: 0, 9: 0, 10: 0}
# Format information for mask 0 at each level (Annex C, Table C.1).
FORMAT_MASK0 = {
    "L": 0b111011111000100,
    "M": 0b101010000010010,
    "Q": 0b011010101011111,
    "H": 0b001011010001001,
}
# Version information (Annex D, Table D.1).
VERSION_INFO = {7: 0x07C94, 8: 0x085BC, 9: 0x09A99, 10: 0x0A4D3}
ALIGNMENT_CENTRES = {1: (), 2: (6, 18), 7: (6, 22, 38), 10: (6, 28, 50)}
ECC_FROM_BITS = {0b01: "L", 0b00: "M", 0b11: "Q", 0b10: "H"}

# What `python run.py login --qr` shows: Telethon's QR login URL, the token base64url
# without padding.
LOGIN_URL = "tg://login?token=" + base64.urlsafe_b64encode(
    hashlib.sha256(b"switchboard qr test").digest()
).decode().rstrip("=")

INPUTS: list[bytes | str] = [
    LOGIN_URL,
    "tg://login?token=AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w",
    "",
    "HELLO WORLD",  # alphanumeric-only text must still go in byte mode
    "Привет, мир",  # multi-byte UTF-8
    bytes(range(256))[:100],  # every byte value class, including 0x00 and 0xFF
]


def size_to_version(matrix: Matrix) -> int:
    return (len(matrix) - 17) // 4


def format_words() -> dict[int, tuple[str, int]]:
    """All 32 valid format words (BCH(15,5), generator 0x537, mask 0x5412) -> level, mask."""
    words = {}
    for value in range(32):
        rem = value << 10
        for shift in range(14, 9, -1):
            if rem >> shift & 1:
                rem ^= 0x537 << (shift - 10)
        words[(value << 10 | rem) ^ 0x5412] = (ECC_FROM_BITS[value >> 3], value & 7)
    return words


def read_format(matrix: Matrix) -> tuple[int, int]:
    """Both 15-bit format information copies, bit 0 first in placement order (Figure 25)."""
    size = len(matrix)
    first_cells = [(row, 8) for row in (0, 1, 2, 3, 4, 5, 7, 8)]
    first_cells += [(8, col) for col in (7, 5, 4, 3, 2, 1, 0)]
    second_cells = [(8, size - 1 - k) for k in range(8)]
    second_cells += [(size - 7 + k, 8) for k in range(7)]
    first = sum(matrix[r][c] << k for k, (r, c) in enumerate(first_cells))
    second = sum(matrix[r][c] << k for k, (r, c) in enumerate(second_cells))
    return first, second


def decode_format(matrix: Matrix) -> tuple[str, int]:
    first, second = read_format(matrix)
    assert first == second
    words = format_words()
    assert first in words, f"{first:015b} is not a valid format word"
    return words[first]


def gf_mul(a: int, b: int) -> int:
    """Multiply in GF(256) mod x^8 + x^4 + x^3 + x^2 + 1, bit by bit (no tables)."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11D
        b >>= 1
    return product


# ---------------------------------------------------------------------------------------
# Against the `qrcode` package (test-only dependency).


@pytest.fixture
def qrcode_pkg() -> ModuleType:
    return pytest.importorskip(
        "qrcode", reason="the `qrcode` package (test extra) is the independent reference"
    )


def reference(
    qrcode_pkg: ModuleType, data: bytes | str, version: int, ecc: str, mask: int
) -> Matrix:
    """qrcode's matrix for one byte-mode segment at a fixed version, level and mask."""
    util = qrcode_pkg.util
    level = getattr(qrcode_pkg, f"ERROR_CORRECT_{ecc}")
    code = qrcode_pkg.QRCode(version=version, error_correction=level, mask_pattern=mask)
    raw = data.encode() if isinstance(data, str) else data
    # qrcode would switch "HELLO WORLD" to alphanumeric mode unless told otherwise.
    code.add_data(util.QRData(raw, mode=util.MODE_8BIT_BYTE))
    code.make(fit=False)
    return [[bool(module) for module in row] for row in code.modules]


@pytest.mark.parametrize("ecc", LEVELS)
@pytest.mark.parametrize("data", INPUTS, ids=range(len(INPUTS)))
def test_encode_equals_qrcode_at_same_version_and_mask(
    qrcode_pkg: ModuleType, data: bytes | str, ecc: str
) -> None:
    matrix = qr.encode(data, ecc)
    level, mask = decode_format(matrix)
    assert level == ecc
    assert matrix == reference(qrcode_pkg, data, size_to_version(matrix), ecc, mask)


@pytest.mark.parametrize("ecc", LEVELS)
def test_every_version_and_mask_equals_qrcode(qrcode_pkg: ModuleType, ecc: str) -> None:
    for version in range(1, 11):
        capacity = CAPACITY[version][LEVELS.index(ecc)]
        # Full, partly padded and empty symbols: padding, terminator and block split differ.
        for length in (capacity, capacity // 2, 0):
            data = hashlib.shake_256(f"{version}{ecc}{length}".encode()).digest(length)
            for mask in range(8):
                ours = qr._build(data, version, ecc, mask)
                assert ours == reference(qrcode_pkg, data, version, ecc, mask), (version, mask)


def test_version_choice_equals_qrcode(qrcode_pkg: ModuleType) -> None:
    for level_index, ecc in enumerate(LEVELS):
        for version in range(1, 11):
            capacity = CAPACITY[version][level_index]
            for length in (capacity - 1, capacity, capacity + 1):
                if version == 10 and length > capacity:
                    continue
                code = qrcode_pkg.QRCode(
                    error_correction=getattr(qrcode_pkg, f"ERROR_CORRECT_{ecc}")
                )
                util = qrcode_pkg.util
                code.add_data(util.QRData(b"a" * length, mode=util.MODE_8BIT_BYTE))
                code.make(fit=True)
                assert size_to_version(qr.encode(b"a" * length, ecc)) == code.version


def test_penalty_equals_qrcode_lost_point(qrcode_pkg: ModuleType) -> None:
    # Same rule readings as qrcode (see qr._penalty), so the scores must agree exactly.
    # qrcode's own mask choice is not compared: it scores masks with the format information
    # left blank, while the spec (and qr.encode) scores the finished symbol.
    for ecc in LEVELS:
        for version in (1, 4, 7, 10):
            for mask in range(8):
                matrix = qr._build(LOGIN_URL.encode(), version, ecc, mask)
                assert qr._penalty(matrix) == qrcode_pkg.util.lost_point(matrix)


# ---------------------------------------------------------------------------------------
# Structure (no reference encoder needed).


def test_version_is_smallest_that_fits() -> None:
    for version, capacities in CAPACITY.items():
        for ecc, capacity in zip(LEVELS, capacities, strict=True):
            assert size_to_version(qr.encode(b"x" * capacity, ecc)) == version
            if version < 10:
                assert size_to_version(qr.encode(b"x" * (capacity + 1), ecc)) == version + 1


@pytest.mark.parametrize("ecc", LEVELS)
def test_too_long_for_version_10_raises(ecc: str) -> None:
    limit = CAPACITY[10][LEVELS.index(ecc)]
    with pytest.raises(ValueError, match=f"{limit + 1} bytes do not fit a version 10 QR code"):
        qr.encode(b"x" * (limit + 1), ecc)


def test_unknown_level_raises() -> None:
    with pytest.raises(ValueError, match="error correction level 'X'"):
        qr.encode("x", "X")


def test_str_is_utf8() -> None:
    assert qr.encode("é") == qr.encode("é".encode())


def test_block_table_fills_the_symbol() -> None:
    for version in range(1, 11):
        symbol = qr._Symbol(version)
        symbol.draw_function_patterns()
        free = sum(not f for row in symbol.function for f in row)
        assert free == TOTAL_CODEWORDS[version] * 8 + REMAINDER_BITS[version]
        for ecc in LEVELS:
            ec_len, groups = qr._BLOCKS[version][ecc]
            blocks = sum(count for count, _ in groups)
            data = sum(count * size for count, size in groups)
            assert data + blocks * ec_len == TOTAL_CODEWORDS[version]
            if len(groups) == 2:
                assert groups[1][1] == groups[0][1] + 1


@pytest.mark.parametrize("degree", [7, 10, 13, 17, 18, 22, 26, 28, 30])
def test_reed_solomon_codewords_have_zero_syndromes(degree: int) -> None:
    # A valid codeword c(x) has roots a^0 .. a^(degree - 1), a = 2 (section 7.5.2).
    data = hashlib.sha256(str(degree).encode()).digest()
    codeword = data + qr._rs_remainder(data, degree)
    for i in range(degree):
        root = 1
        for _ in range(i):
            root = gf_mul(root, 2)
        value = 0
        for coef in codeword:
            value = gf_mul(value, root) ^ coef
        assert value == 0, f"syndrome {i}"


@pytest.mark.parametrize("ecc", LEVELS)
def test_format_words_match_annex_c(ecc: str) -> None:
    assert qr._format_bits(ecc, 0) == FORMAT_MASK0[ecc]
    matrix = qr._build(b"x", 1, ecc, 0)
    assert read_format(matrix) == (FORMAT_MASK0[ecc], FORMAT_MASK0[ecc])


@pytest.mark.parametrize("data", INPUTS, ids=range(len(INPUTS)))
def test_finder_timing_and_dark_module(data: bytes | str) -> None:
    matrix = qr.encode(data)
    size = len(matrix)
    finder = [[max(abs(r - 3), abs(c - 3)) != 2 for c in range(7)] for r in range(7)]
    for top, left in ((0, 0), (0, size - 7), (size - 7, 0)):
        assert [row[left : left + 7] for row in matrix[top : top + 7]] == finder
    # Separators: the light ring just inside the symbol around each finder.
    for k in range(8):
        assert not matrix[7][k] and not matrix[k][7]
        assert not matrix[7][size - 1 - k] and not matrix[k][size - 8]
        assert not matrix[size - 8][k] and not matrix[size - 1 - k][7]
    for k in range(8, size - 8):
        assert matrix[6][k] == (k % 2 == 0)
        assert matrix[k][6] == (k % 2 == 0)
    assert matrix[size - 8][8]


@pytest.mark.parametrize("version", sorted(ALIGNMENT_CENTRES))
def test_alignment_patterns(version: int) -> None:
    matrix = qr._build(b"", version, "L", 0)
    centres = ALIGNMENT_CENTRES[version]
    under_finders = {(6, 6), (6, centres[-1]), (centres[-1], 6)} if centres else set()
    for row in centres:
        for col in centres:
            if (row, col) in under_finders:
                continue
            block = [line[col - 2 : col + 3] for line in matrix[row - 2 : row + 3]]
            assert block == [
                [max(abs(r), abs(c)) != 1 for c in range(-2, 3)] for r in range(-2, 3)
            ], (row, col)


@pytest.mark.parametrize("version", sorted(VERSION_INFO))
def test_version_information(version: int) -> None:
    matrix = qr._build(b"", version, "M", 3)
    size = len(matrix)
    upper_right = sum(matrix[k // 3][size - 11 + k % 3] << k for k in range(18))
    lower_left = sum(matrix[size - 11 + k % 3][k // 3] << k for k in range(18))
    assert upper_right == lower_left == VERSION_INFO[version]


@pytest.mark.parametrize("ecc", LEVELS)
@pytest.mark.parametrize("data", INPUTS, ids=range(len(INPUTS)))
def test_chosen_mask_has_lowest_penalty(data: bytes | str, ecc: str) -> None:
    matrix = qr.encode(data, ecc)
    level, mask = decode_format(matrix)
    assert level == ecc
    raw = data.encode() if isinstance(data, str) else data
    scores = [qr._penalty(qr._build(raw, size_to_version(matrix), ecc, m)) for m in range(8)]
    assert scores[mask] == min(scores)
    assert mask == scores.index(min(scores))


def test_penalty_rules_on_small_grids() -> None:
    # 5x5 all light: 10 runs of 5 (N1: 3 each), 16 2x2 blocks (N2: 3 each), 0 % dark (N4:
    # 50 % off, 10 steps of 5 %), no finder-like pattern (needs 11 modules).
    assert qr._penalty([[False] * 5 for _ in range(5)]) == 10 * 3 + 16 * 3 + 10 * 10
    # 11x11: a checkerboard (no runs of 5, no 2x2 blocks) whose top row is 1011101 0000,
    # either way round. 60 of 121 modules dark: N4 0. Only N3 scores, once.
    pattern = [True, False, True, True, True, False, True, False, False, False, False]
    for top in (pattern, pattern[::-1]):
        grid = [top] + [[(r + c) % 2 == 0 for c in range(11)] for r in range(1, 11)]
        assert sum(map(sum, grid)) == 60
        assert qr._penalty(grid) == 40


# ---------------------------------------------------------------------------------------
# Rendering.


def parse_render(text: str) -> Matrix:
    """Invert render(): text -> rows of light flags (True = light), two rows per line."""
    halves = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}
    rows: Matrix = []
    for line in text.split("\n"):
        cells = [halves[ch] for ch in line]
        rows.append([upper for upper, _ in cells])
        rows.append([lower for _, lower in cells])
    return rows


@pytest.mark.parametrize("quiet_zone", [0, 1, 2, 4])
@pytest.mark.parametrize("data", [LOGIN_URL, "x"])
def test_render_round_trips(data: str, quiet_zone: int) -> None:
    matrix = qr.encode(data)
    text = qr.render(matrix, quiet_zone)
    assert not text.endswith("\n")
    width = len(matrix) + 2 * quiet_zone
    lines = text.split("\n")
    assert len(lines) == (width + 1) // 2
    assert {len(line) for line in lines} == {width}
    light = parse_render(text)
    expected = [[True] * width for _ in range(quiet_zone)]
    expected += [[True] * quiet_zone + [not d for d in row] + [True] * quiet_zone for row in matrix]
    expected += [[True] * width for _ in range(quiet_zone)]
    if len(expected) % 2:
        expected.append([True] * width)  # the odd last line's lower half is light
    assert light == expected


def test_render_draws_light_modules_as_ink() -> None:
    # The qrencode -t UTF8 convention: a dark module is background (space), a light one ink.
    assert qr.render([[True]], 0) == "▄"  # the odd row's missing lower half is light
    assert qr.render([[True, False], [False, True]], 0) == "▄▀"
    assert qr.render([[False, False], [False, False]], 0) == "██"
    assert qr.render([[True, True], [True, True]], 0) == "  "


def test_render_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="square"):
        qr.render([])
    with pytest.raises(ValueError, match="square"):
        qr.render([[True, False]])
    with pytest.raises(ValueError, match="quiet_zone"):
        qr.render([[True]], -1)


def test_to_terminal_is_render_of_encode() -> None:
    assert qr.to_terminal(LOGIN_URL, "Q") == qr.render(qr.encode(LOGIN_URL, "Q"))


# ---------------------------------------------------------------------------------------
# A real decoder (zbar) reads what we draw.


def write_png(path: Path, light: Matrix, scale: int) -> None:
    """An 8-bit greyscale PNG, each cell ``scale`` pixels square (True = white)."""
    rows = b"".join(
        b"\x00" + bytes(255 if cell else 0 for cell in row for _ in range(scale))
        for row in light
        for _ in range(scale)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", len(light[0]) * scale, len(light) * scale, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def zbar_decode(path: Path) -> bytes:
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        pytest.skip("zbarimg not installed (apt-get install zbar-tools)")
    done = subprocess.run(
        [zbarimg, "--quiet", "--raw", str(path)], capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.rstrip(b"\n")


@pytest.mark.parametrize("ecc", LEVELS)
@pytest.mark.parametrize("kind", ["login", "short", "longest"])
def test_zbar_reads_the_matrix(tmp_path: Path, kind: str, ecc: str) -> None:
    longest = "https://example.org/".ljust(CAPACITY[10][LEVELS.index(ecc)], "a")
    data = {"login": LOGIN_URL, "short": "x", "longest": longest}[kind]
    matrix = qr.encode(data, ecc)
    quiet = [[True] * (len(matrix) + 8) for _ in range(4)]
    light = quiet + [[True] * 4 + [not d for d in row] + [True] * 4 for row in matrix] + quiet
    png = tmp_path / "code.png"
    write_png(png, light, 4)
    assert zbar_decode(png) == data.encode()


def test_zbar_reads_the_terminal_text(tmp_path: Path) -> None:
    # How the text looks on a light-on-dark terminal: ink (█ halves) light, background dark,
    # with more dark screen around it.
    light = parse_render(qr.to_terminal(LOGIN_URL))
    screen = [[False] * (len(light[0]) + 16) for _ in range(8)]
    light = screen + [[False] * 8 + row + [False] * 8 for row in light] + screen
    png = tmp_path / "terminal.png"
    write_png(png, light, 4)
    assert zbar_decode(png) == LOGIN_URL.encode()
