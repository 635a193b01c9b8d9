"""The HTTP conversation: the JSON bodies of the API actor's endpoints (``actors/api``).

Requests people send are strict: an unknown field, a wrong type or a missing field is
refused (``400``) before anything is asked of an actor. Replies reuse the runtime's
messages (``protocols.store``, ``protocols.broker``, ``protocols.session``) wherever one
exists, so the OpenAPI document, generated from these same classes, cannot drift from
what the handlers send.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from protocols.broker import AddressInfo, NodeInfo
from protocols.parser import ReaderInfo
from protocols.session import SessionStatus, User
from protocols.store import Channel, StoreStats

__all__ = [
    "AccountReady",
    "CodeForm",
    "ErrorBody",
    "Health",
    "LoginStep",
    "NewChannel",
    "PasswordForm",
    "PhoneForm",
    "Readiness",
    "StatusReport",
]

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class _In(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A request body: unknown fields are an error, not silently dropped."""


class NewChannel(_In):
    """``POST /channels``: watch a channel (``@name``, a t.me link, an invite link, an id);
    ``backfill`` posts are stored at once (-1: the parser's default)."""

    ref: Text
    backfill: Annotated[int, msgspec.Meta(ge=-1, le=1000)] = -1


class PhoneForm(_In):
    """``POST /login/{account}/phone``: send a login code to this phone."""

    phone: Text


class CodeForm(_In):
    """``POST /login/{account}/code``: the code Telegram sent."""

    code: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]


class PasswordForm(_In):
    """``POST /login/{account}/password``: the two-step verification password."""

    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]

    def __repr__(self) -> str:
        return "PasswordForm(password='***')"


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Every error reply: ``code`` is the typed error's name (``BadRequest``, ``FloodWait``,
    ...); ``retry_after`` (seconds) comes with ``FloodWait`` and ``Busy``."""

    code: str
    message: str
    retry_after: float | None = None


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok"] = "ok"


class AccountReady(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    state: str
    authorized: bool = False


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /ready``: 200 when the broker answers and the store is ready, else 503."""

    ready: bool
    broker: bool
    store: bool
    accounts: list[AccountReady] = []


class LoginStep(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where a login stands, for the login page.

    ``waiting`` (a QR code to scan: ``qr_svg``, ``qr_url``, ``expires_at``),
    ``code_sent`` (type the code), ``password_needed`` (with ``hint``), ``expired`` (the QR
    code expired: start again), ``done`` (logged in as ``user``).
    """

    state: Literal["waiting", "code_sent", "password_needed", "expired", "done"]
    qr_svg: str = ""
    qr_url: str = ""
    expires_at: int = 0
    hint: str = ""
    user: User | None = None


class StatusReport(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /status``: the whole system as the API sees it right now.

    ``problems`` names every part that did not answer (the rest is still reported);
    ``deliveries_pending`` and ``deliveries_failed`` count the bot's deliveries in those
    states (the delivery queue; counted up to ``protocols.store.MAX_PAGE``);
    ``posts_per_minute`` counts stored posts per minute over the last half hour, oldest
    first, as the API saw them on the bus since it started.
    """

    generated_at: float
    broker_uptime_s: float = 0.0
    nodes: list[NodeInfo] = []
    actors: list[AddressInfo] = []
    failed: list[str] = []
    accounts: list[SessionStatus] = []
    readers: list[ReaderInfo] = []
    channels: list[Channel] = []
    store: StoreStats | None = None
    deliveries_pending: int = 0
    deliveries_failed: int = 0
    posts_per_minute: list[int] = []
    problems: list[str] = []
