"""The pure parts of the API: what the pages draw from a report, and the posts-per-minute
series; no process, no network."""

from __future__ import annotations

import msgspec
import pytest

from actors.api.pages import chart_svg, login_page, status_page
from actors.api.status import CHART_MINUTES, PostRate
from protocols.api import StatusReport
from protocols.parser import ReaderInfo
from protocols.session import SessionStatus, User
from protocols.store import Channel

NOW = 1_800_000_000.0  # a minute boundary: 30_000_000 minutes


def test_post_rate_counts_per_minute_oldest_first_and_forgets_old_minutes() -> None:
    rate = PostRate()
    for at in (NOW, NOW + 10, NOW - 60, NOW - 60 * CHART_MINUTES):
        rate.add(at)
    series = rate.series(NOW + 30)
    assert len(series) == CHART_MINUTES
    assert series[-1] == 2 and series[-2] == 1 and sum(series) == 3  # the oldest fell out
    assert rate.total == 4


@pytest.mark.parametrize(
    ("counts", "tallest"), [([0] * 30, 0.0), ([0, 5, 10], 102.0), ([3], 102.0)]
)
def test_chart_bars_scale_to_the_busiest_minute(counts: list[int], tallest: float) -> None:
    svg = chart_svg(counts)
    assert svg.count('class="bar"') == len(counts)
    heights = [float(part.split('"')[0]) for part in svg.split('height="')[2:]]
    assert max(heights) == tallest


def test_status_page_escapes_what_it_shows() -> None:
    evil = "<script>alert(1)</script>"
    report = StatusReport(
        generated_at=NOW,
        channels=[Channel(id=-1001, title=evil, username="")],
        accounts=[SessionStatus(account="a", state="authorized", authorized=True,
                                user=User(id=1, first_name=evil))],
        problems=[evil],
    )  # fmt: skip
    html = status_page(
        msgspec.structs.replace(report, readers=[ReaderInfo(account="r1", channels=3)])
    )
    assert "<td>r1</td>" in html and "<td>3 of 500</td>" in html
    assert "<script>" not in html and html.count("&lt;script&gt;") == 3
    assert '<meta http-equiv="refresh" content="5">' in html


def test_login_page_escapes_the_account_and_phone_and_says_who_is_logged_in() -> None:
    user = User(id=7, first_name="Dana", username="dana")
    page = login_page('x"><img src=x>', '"+1', SessionStatus(
        account="x", state="authorized", authorized=True, user=user
    ))  # fmt: skip
    assert "<img" not in page and 'value="&quot;+1"' in page
    assert "is logged in as Dana @dana" in page
