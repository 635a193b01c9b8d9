"""The HTML pages: the status page, the login page and the token form.

Pages are self-contained (inline CSS, inline SVG, a few lines of inline script; no
external asset, so they work on a host without internet). Every value shown is escaped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from html import escape

from protocols.api import StatusReport
from protocols.session import SessionStatus, User

__all__ = ["chart_svg", "login_page", "message_page", "status_page", "token_page"]

REFRESH_S = 5

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;background:#f6f7f9;color:#1d2330}
h1{margin:0 0 .2rem}h2{margin:1.4rem 0 .4rem;font-size:1.05rem}
.sub{color:#5b6475;margin:0}.problem{color:#a3261b}.ok{color:#1d7a35}
table{border-collapse:collapse;background:#fff;min-width:40rem}
th,td{padding:.25rem .6rem;border-bottom:1px solid #e3e6eb;text-align:left}
th{background:#eef0f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.card{background:#fff;border:1px solid #e3e6eb;border-radius:6px;padding:1rem;max-width:34rem}
.card+.card{margin-top:1rem}input{font:inherit;padding:.3rem;margin:.2rem 0}
button{font:inherit;padding:.3rem .8rem}.hidden{display:none}
#message{font-weight:600;min-height:1.4em}.error{color:#a3261b}.success{color:#1d7a35}
svg.chart rect.bar{fill:#3d6fd6}svg.chart text{font-size:10px;fill:#5b6475}
"""


def _page(title: str, body: str, head: str = "") -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{head}'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str) -> str:
    """A table; numbers are right-aligned. ``empty`` is shown when there is no row."""
    cells = []
    for row in rows:
        tds = "".join(
            f'<td class="n">{value}</td>'
            if isinstance(value, (int, float))
            else f"<td>{escape(str(value))}</td>"
            for value in row
        )
        cells.append(f"<tr>{tds}</tr>")
    if not cells:
        return f'<p class="sub">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{''.join(cells)}</table>"


def chart_svg(counts: Sequence[int], width: int = 600, height: int = 120) -> str:
    """A bar chart of per-minute counts (oldest first) as an inline ``<svg>``."""
    top = max([*counts, 1])
    plot = height - 18
    step = width / max(len(counts), 1)
    bars = []
    for i, count in enumerate(counts):
        h = round(plot * count / top, 1)
        age = len(counts) - 1 - i
        bars.append(
            f'<rect class="bar" x="{i * step + 1:.1f}" y="{plot - h:.1f}" '
            f'width="{step - 2:.1f}" height="{h}"><title>{count} posts, '
            f"{age} min ago</title></rect>"
        )
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="posts stored per minute">'
        f'<line x1="0" y1="{plot}" x2="{width}" y2="{plot}" stroke="#c5cad3"/>'
        f"{''.join(bars)}"
        f'<text x="0" y="{height - 4}">-{len(counts)} min</text>'
        f'<text x="{width}" y="{height - 4}" text-anchor="end">now (max {top}/min)</text>'
        "</svg>"
    )


def _age(at: int | float, now: float) -> str:
    return f"{now - at:.0f}s ago" if at else "never"


def _who(user: User | None) -> str:
    if user is None:
        return ""
    name = " ".join(p for p in (user.first_name, user.last_name) if p)
    return f"{name} @{user.username}" if user.username else name


def _floods(account: SessionStatus) -> str:
    return ", ".join(f"{m} {s:.0f}s" for m, s in sorted(account.flood_waits.items())) or "none"


def status_page(report: StatusReport) -> str:
    """The status report for people; reloads itself every REFRESH_S seconds."""
    now = report.generated_at
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    problems = "".join(f'<li class="problem">{escape(p)}</li>' for p in report.problems)
    health = f"<ul>{problems}</ul>" if problems else '<p class="ok">every part answered</p>'
    store = report.store
    sections = [
        f'<h1>Switchboard</h1><p class="sub">{stamp} · broker up '
        f"{report.broker_uptime_s:.0f}s · refreshes every {REFRESH_S}s</p>{health}",
        f"<h2>Posts stored per minute</h2>{chart_svg(report.posts_per_minute)}",
        "<h2>Nodes</h2>"
        + _table(
            ["node", "host", "pid", "last seen", "addresses"],
            [
                (n.node_id, n.host, n.pid, f"{n.last_seen_s:.1f}s ago", len(n.addresses))
                for n in report.nodes
            ],
            "no node",
        ),
        "<h2>Actors</h2>"
        + _table(
            ["address", "node", "state", "mailbox", "restarts", "last error"],
            [
                (a.address, a.node_id, a.state or "?", a.mailbox, a.restarts, a.last_error)
                for a in report.actors
            ],
            "no actor",
        ),
        "<h2>Accounts</h2>"
        + _table(
            ["account", "state", "user", "flood waits", "reconnects", "last update"],
            [
                (
                    a.account,
                    a.state,
                    _who(a.user),
                    _floods(a),
                    a.reconnects,
                    f"{a.last_update_age_s:.0f}s ago" if a.last_update_age_s >= 0 else "never",
                )
                for a in report.accounts
            ],
            "no account",
        ),
        "<h2>Readers</h2>"
        + _table(
            ["reader", "state", "channels", "flood wait", "resolves left"],
            [
                (
                    r.account,
                    r.state,
                    f"{r.channels} of {r.limit}",
                    f"{r.flood_wait_s:.0f}s",
                    r.resolves_left,
                )
                for r in report.readers
            ],
            "no reader (the parser did not answer, or has none)",
        ),
        "<h2>Channels</h2>"
        + _table(
            ["channel", "name", "reader", "state", "last message", "last post", "lag"],
            [
                (
                    c.id,
                    c.username or c.title,
                    c.reader,
                    c.state,
                    c.last_message_id,
                    _age(c.last_post_at, now),
                    f"{c.lag_s:.0f}s",
                )
                for c in report.channels
            ],
            "no channel",
        ),
        "<h2>Store and delivery queue (deliveries pending, failed)</h2>"
        + _table(
            ["posts", "last seq", "channels", "subscriptions", "database", "pending", "failed"],
            [
                (
                    store.posts,
                    store.last_seq,
                    store.channels,
                    store.subscriptions,
                    f"{store.db_bytes / 1e6:.1f} MB",
                    report.deliveries_pending,
                    report.deliveries_failed,
                )
            ]
            if store
            else [],
            "the store did not answer",
        ),
    ]
    head = f'<meta http-equiv="refresh" content="{REFRESH_S}">'
    return _page("Switchboard status", "".join(sections), head)


def message_page(title: str, text: str) -> str:
    """A page that only says something (an unknown account, a refusal)."""
    return _page(title, f'<h1>{escape(title)}</h1><p class="error">{escape(text)}</p>')


def token_page(next_path: str, text: str) -> str:
    """Asks for the API token; posting it sets a cookie and returns to ``next_path``."""
    form = (
        f'<form class="card" method="post" action="/auth"><p>{escape(text)}</p>'
        f'<input type="hidden" name="next" value="{escape(next_path)}">'
        '<label>API token <input type="password" name="token" autocomplete="off" '
        'required></label> <button type="submit">Continue</button></form>'
    )
    return _page("Switchboard: API token", f"<h1>API token needed</h1>{form}")


_LOGIN_SCRIPT = """
const base = location.pathname.replace(/\\/$/, '');
const $ = (id) => document.getElementById(id);
let timer = null;
function say(text, kind) { $('message').textContent = text; $('message').className = kind; }
function show(id, on) { $(id).classList.toggle('hidden', !on); }
async function call(method, path, body) {
  const init = {method, credentials: 'same-origin', headers: {}};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body);
  }
  const response = await fetch(base + path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = {message: response.statusText}; }
  if (!response.ok) throw data;
  return data;
}
function who(user) {
  const name = [user.first_name, user.last_name].filter(Boolean).join(' ');
  return user.username ? name + ' (@' + user.username + ')' : name;
}
function render(step) {
  if (step.state === 'waiting') {
    $('qr').innerHTML = step.qr_svg;
    $('qr-url').textContent = step.qr_url;
    show('qr-card', true);
    poll();
  } else if (step.state === 'code_sent') {
    show('code-form', true); $('code').focus();
    say('A login code was sent to your Telegram app. Type it below.', 'success');
  } else if (step.state === 'password_needed') {
    clearTimeout(timer);
    show('password-form', true); show('qr-start-card', false); show('phone-card', false);
    $('password').focus();
    $('hint').textContent = step.hint ? ' (hint: ' + step.hint + ')' : '';
    say('This account has two-step verification: enter its password.', 'success');
  } else if (step.state === 'done') {
    clearTimeout(timer);
    for (const id of ['state', 'qr-start-card', 'phone-card', 'password-form']) {
      show(id, false);
    }
    say('Login succeeded: logged in as ' + who(step.user) + '.', 'success');
  }
}
function poll() {
  clearTimeout(timer);
  timer = setTimeout(() => run(() => call('GET', '/qr')), 1000);
}
async function run(action) {
  try { render(await action()); } catch (error) { say(error.message || 'failed', 'error'); }
}
function submit(formId, path, field) {
  $(formId).addEventListener('submit', (event) => {
    event.preventDefault();
    say('', '');
    run(() => call('POST', path, {[field]: $(field).value}));
  });
}
$('qr-start').addEventListener('click', () => run(() => call('POST', '/qr')));
submit('phone-form', '/phone', 'phone');
submit('code-form', '/code', 'code');
submit('password-form', '/password', 'password');
"""


def login_page(account: str, phone: str, status: SessionStatus | None) -> str:
    """The login page of ``account``: QR code, phone code and two-step password steps."""
    if status is not None and status.authorized:
        state = f"{account} is logged in as {_who(status.user)}."
    else:
        state = f"{account} is not logged in ({status.state if status else 'unknown state'})."
    body = f"""
<h1>Log in {escape(account)}</h1><p class="sub" id="state">{escape(state)}</p>
<p id="message" role="status"></p>
<div class="card" id="qr-start-card"><h2>With the QR code</h2>
<p>Open Telegram on your phone: Settings &gt; Devices &gt; Link Desktop Device, and scan.</p>
<button id="qr-start" type="button">Show QR code</button>
<div id="qr-card" class="hidden"><div id="qr"></div>
<p class="sub">The code is renewed as it expires. <span id="qr-url"></span></p></div></div>
<div class="card" id="phone-card"><h2>With a code sent to the phone</h2>
<form id="phone-form"><label>Phone <input id="phone" value="{escape(phone)}"
 autocomplete="tel" required></label> <button type="submit">Send code</button></form>
<form id="code-form" class="hidden"><label>Code <input id="code" inputmode="numeric"
 autocomplete="one-time-code" required></label> <button type="submit">Log in</button></form>
</div>
<form class="card hidden" id="password-form"><h2>Two-step verification</h2>
<label>Password<span id="hint"></span> <input id="password" type="password"
 autocomplete="current-password" required></label> <button type="submit">Log in</button></form>
<script>{_LOGIN_SCRIPT}</script>"""
    return _page(f"Log in {account}", body)
