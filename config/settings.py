"""Typed settings: what can be configured, its type, default and the rules between values.

Every section is a frozen msgspec Struct that forbids unknown fields. Field types carry
their per-value constraints (``Annotated[int, Meta(gt=0)]``); the loader enforces those and
the types generically, so adding a setting is one line here. Rules that involve more than
one value live in `iter_problems`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import msgspec

from config.keys import check_endpoint, check_string_session, rsa_public_key_pem
from config.secrets import Secret, enc_hook, reveal_enc_hook

__all__ = [
    "ACCOUNT_NAME_PATTERN",
    "ENDPOINT_FIELDS",
    "LOG_LEVELS",
    "SOCKET_DIR",
    "AccountSettings",
    "ApiSettings",
    "BotSettings",
    "DeliverySettings",
    "LogSettings",
    "ParserSettings",
    "PeerSettings",
    "RateLimitSettings",
    "RuntimeSettings",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "StoreSettings",
    "SupervisionSettings",
    "TelegramSettings",
    "dump_settings",
    "iter_problems",
    "with_local_endpoints",
]

ACCOUNT_NAME_PATTERN = r"^[a-z0-9_-]+$"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
METHOD_CLASSES = ("resolve", "join", "send", "history", "dialogs", "other")
# The settings that name the broker's endpoints, in the order it binds them.
ENDPOINT_FIELDS = ("broker_endpoint", "events_in_endpoint", "events_out_endpoint")
# In data_dir: the default (ipc) endpoints' sockets.
SOCKET_DIR = "sockets"
# ZeroMQ CURVE keys in their printable (Z85) form are always 40 characters.
_Z85_KEY_LENGTH = 40

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
# Port 0 asks the OS for a free port: useful for a listener, never for a server to dial.
ListenPort = Annotated[int, msgspec.Meta(ge=0, le=65535)]
DialPort = Annotated[int, msgspec.Meta(ge=1, le=65535)]
AccountName = Annotated[str, msgspec.Meta(pattern=ACCOUNT_NAME_PATTERN)]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Base of every settings section (the Struct options are inherited)."""


class RuntimeSettings(_Section):
    """ZeroMQ endpoints and limits of the broker, nodes and actors."""

    # Empty (the default): an ipc socket in <data_dir>/sockets, reachable by this Unix user
    # only (see `with_local_endpoints`); a multi-host deployment sets tcp://HOST:PORT.
    # Nodes in the broker's own process use inproc anyway.
    broker_endpoint: str = ""
    # Publishers connect here; the broker's XSUB socket binds it.
    events_in_endpoint: str = ""
    # Subscribers connect here; the broker's XPUB socket binds it.
    events_out_endpoint: str = ""
    max_frame_bytes: PositiveInt = 1_048_576
    heartbeat_interval_s: PositiveFloat = 1.0
    heartbeat_liveness: PositiveInt = 3
    mailbox_size: PositiveInt = 1000
    request_timeout_s: PositiveFloat = 10.0
    # Optional CURVE: the broker's public key (for connecting peers) and this process's
    # secret key, both in Z85 form.
    curve_server_key: Secret | None = None
    curve_secret_key: Secret | None = None
    # This host's own key pair for the links it dials: a NAME.key_secret certificate as
    # `run.py curve-keys --name NAME` writes it. Without one, the processes of the broker's
    # host use the broker's key pair (they are local peers); others are not admitted.
    curve_key_file: str | None = None
    # On the broker's host: a directory of NAME.key certificates of admitted peers (as
    # zmq.auth reads them), besides the keys listed under [peers].
    curve_clients_dir: str | None = None


class PeerSettings(_Section):
    """A host admitted over CURVE (on the broker's host): its public key, the names it
    may speak as (glob patterns over client identities, node ids and claimed addresses;
    empty: ``NAME`` and ``NAME:*``), the targets its requests may go to (glob patterns;
    empty: none) and the message types it may never send (e.g. ExportSession). Without
    ``public_key``, the key is ``NAME.key`` in ``runtime.curve_clients_dir``."""

    public_key: str = ""
    names: list[str] = msgspec.field(default_factory=list)
    send_to: list[str] = msgspec.field(default_factory=list)
    deny: list[str] = msgspec.field(default_factory=list)


class SupervisionSettings(_Section):
    """Restart intensity (at most ``max_restarts`` in ``within_s``) and restart backoff."""

    max_restarts: NonNegativeInt = 5
    within_s: PositiveFloat = 10.0
    backoff_initial_s: PositiveFloat = 0.05
    backoff_max_s: PositiveFloat = 2.0


class LogSettings(_Section):
    """Log level (one of `LOG_LEVELS`, any case) and output format."""

    level: str = "info"
    format: Literal["auto", "console", "json"] = "auto"


class TelegramSettings(_Section):
    """Defaults every account inherits unless it sets its own."""

    api_id: PositiveInt | None = None
    api_hash: Secret | None = None


class ServerSettings(_Section):
    """Where an account connects instead of Telegram (the sandbox)."""

    host: str
    port: DialPort
    dc_id: Annotated[int, msgspec.Meta(ge=1)] = 2
    public_key_file: str | None = None


class RateLimitSettings(_Section):
    """A token bucket: ``burst`` requests at once, refilled at ``rate_per_s``."""

    rate_per_s: PositiveFloat
    burst: PositiveInt


class SessionSettings(_Section):
    """How every session actor watches and restores its connection."""

    # With no update for this long, a cheap request checks that the connection lives.
    watchdog_interval_s: PositiveFloat = 30.0
    # A check (or a reconnect) taking longer than this counts as a dead connection.
    ping_timeout_s: PositiveFloat = 10.0
    reconnect_initial_s: PositiveFloat = 1.0
    reconnect_max_s: PositiveFloat = 60.0
    # Update state (pts) and entities are written to the session this often while they change.
    state_save_interval_s: PositiveFloat = 0.25


class AccountSettings(_Section):
    """One Telegram account, owned by exactly one session actor."""

    kind: Literal["user", "bot"] = "user"
    api_id: PositiveInt | None = None
    api_hash: Secret | None = None
    phone: str | None = None
    bot_token: Secret | None = None
    session_string: Secret | None = None
    session_file: str | None = None
    server: ServerSettings | None = None
    # Sender addresses (glob patterns, e.g. "client:*") allowed to ExportSession.
    export_allowed: list[str] = msgspec.field(default_factory=list)
    # Per method class ("resolve", "join", "send", "history", "dialogs", "other"):
    # overrides of the built-in proactive rate limits.
    limits: dict[str, RateLimitSettings] = msgspec.field(default_factory=dict)


class ApiSettings(_Section):
    """The HTTP API; ``token`` is required by every request that changes state."""

    host: str = "127.0.0.1"
    port: ListenPort = 8080
    token: Secret | None = None


class ParserSettings(_Section):
    """The channel monitor (``parser:main``): its reader accounts and their rations.

    Telegram rations user accounts hard (see the README's monitor section): resolving
    usernames at more than about 20 a minute or 200 a day, or joining in bursts, earns
    FloodWaits of hours. The parser keeps each reader inside these budgets itself and
    answers ``FloodWait(retry_after)`` when a request would break them.
    """

    # Accounts (configured user accounts) that read channels; the parser runs when set.
    readers: list[AccountName] = msgspec.field(default_factory=list)
    # Posts stored at once when a channel is added (at least the newest one is stored:
    # catch-up and the reconciler start from the newest stored message id).
    backfill: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 50
    # Channels per reader: Telegram's cap is 500 (CHANNELS_TOO_MUCH past it).
    channel_limit: PositiveInt = 500
    resolves_per_min: PositiveInt = 20
    resolves_per_day: PositiveInt = 200
    joins_per_hour: PositiveInt = 20
    joins_per_day: PositiveInt = 100
    # RemoveChannel also leaves the channel on Telegram.
    leave_on_remove: bool = False
    # The reconciler checks each channel within these bounds: channels whose posts arrive
    # live drift towards the longest period, channels that missed posts to the shortest.
    reconcile_min_s: PositiveFloat = 60.0
    reconcile_s: PositiveFloat = 600.0
    reconcile_max_s: PositiveFloat = 3600.0
    # History calls a reader may make a minute for checks and catch-up (a token bucket).
    calls_per_min: PositiveInt = 60
    # A reader flood-waited longer than this for reading or joining, or revoked, hands
    # its channels to another reader.
    move_after_flood_s: PositiveFloat = 300.0
    # The most posts one catch-up of a channel fetches (a longer gap is fetched in parts).
    catch_up_limit: PositiveInt = 5000
    # Deadline of each request to a session or the store.
    call_timeout_s: PositiveFloat = 30.0


class DeliverySettings(_Section):
    """How the bot delivers new posts: Telegram's bot sending limits (sent steadily, never
    in bursts), how many posts one store read takes, and what a deleted source post does
    to its delivered copies ("mark" edits them to say so, "keep" leaves them, "delete"
    deletes them from the subscribers' chats, once, paced like edits).
    """

    overall_per_s: PositiveFloat = 30.0
    private_per_s: PositiveFloat = 1.0
    group_per_min: PositiveFloat = 20.0
    page: Annotated[int, msgspec.Meta(gt=0, le=1000)] = 200
    poll_interval_s: PositiveFloat = 5.0
    edits: bool = True
    on_deleted: Literal["mark", "keep", "delete"] = "mark"


class BotSettings(_Section):
    """Who may use the bot (``mode``: everyone, the allowlist (and admins), or admins
    only; users by Telegram id) and how it answers."""

    mode: Literal["everyone", "allowlist", "admins"] = "everyone"
    admins: list[int] = msgspec.field(default_factory=list)
    allowlist: list[int] = msgspec.field(default_factory=list)
    page_size: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    add_timeout_s: PositiveFloat = 300.0
    max_keywords: Annotated[int, msgspec.Meta(ge=0, le=50)] = 10
    delivery: DeliverySettings = msgspec.field(default_factory=DeliverySettings)


class StoreSettings(_Section):
    """The application database owned by ``store:main`` (one SQLite file, WAL mode)."""

    # The SQLite file; empty means <data_dir>/store.sqlite3.
    path: str = ""
    # "normal": a reply means the write survives the process being killed (kill -9, a
    # crash); only a power loss or OS crash may lose the last commits. "full" also
    # survives those (an fsync per commit).
    synchronous: Literal["normal", "full"] = "normal"
    # Under load, up to this many consecutive write requests share one commit (replies
    # still go out only after it).
    batch_limit: PositiveInt = 256


class Settings(_Section):
    """All settings; build it with `config.load_settings`."""

    data_dir: str = "data"
    runtime: RuntimeSettings = msgspec.field(default_factory=RuntimeSettings)
    supervision: SupervisionSettings = msgspec.field(default_factory=SupervisionSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    telegram: TelegramSettings = msgspec.field(default_factory=TelegramSettings)
    session: SessionSettings = msgspec.field(default_factory=SessionSettings)
    accounts: dict[AccountName, AccountSettings] = msgspec.field(default_factory=dict)
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)
    parser: ParserSettings = msgspec.field(default_factory=ParserSettings)
    bot: BotSettings = msgspec.field(default_factory=BotSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    # Peers admitted over CURVE, by name (see the README's Security section).
    peers: dict[AccountName, PeerSettings] = msgspec.field(default_factory=dict)

    def store_path(self) -> str:
        """The store's SQLite file: ``store.path``, or ``store.sqlite3`` in ``data_dir``."""
        return self.store.path or f"{self.data_dir}/store.sqlite3"

    def account(self, name: str) -> AccountSettings:
        """Return account ``name`` with ``api_id``/``api_hash`` filled from ``telegram``.

        Raises KeyError if no such account is configured.
        """
        acc = self.accounts[name]
        return msgspec.structs.replace(
            acc,
            api_id=acc.api_id if acc.api_id is not None else self.telegram.api_id,
            api_hash=acc.api_hash if acc.api_hash is not None else self.telegram.api_hash,
        )


def with_local_endpoints(settings: Settings) -> Settings:
    """``settings`` with every empty endpoint set to its ipc socket in the data dir.

    The sockets live in ``<data_dir>/sockets`` (absolute, so every process that shares the
    data dir finds them); the broker makes that directory 0700 and each socket 0600.
    """
    rt = settings.runtime
    directory = os.path.join(os.path.abspath(settings.data_dir), SOCKET_DIR)
    local = {
        field: f"ipc://{directory}/{name}.sock"
        for field, name in zip(ENDPOINT_FIELDS, ("broker", "events-in", "events-out"), strict=True)
        if not getattr(rt, field)
    }
    if not local:
        return settings
    return msgspec.structs.replace(settings, runtime=msgspec.structs.replace(rt, **local))


def dump_settings(settings: Settings, *, reveal: bool = False) -> dict[str, Any]:
    """Return ``settings`` as plain builtins; secrets are ``"***"`` unless ``reveal``."""
    hook = reveal_enc_hook if reveal else enc_hook
    result: dict[str, Any] = msgspec.to_builtins(settings, enc_hook=hook)
    return result


def iter_problems(settings: Settings) -> Iterator[tuple[str, str]]:
    """Yield ``(dotted key, problem)`` for every rule between values that ``settings`` breaks.

    Types and per-value constraints are checked by the loader before this runs. Messages
    never include a secret's value.
    """
    if settings.log.level.lower() not in LOG_LEVELS:
        yield "log.level", f"expected one of {', '.join(LOG_LEVELS)} (any case)"
    sup = settings.supervision
    if sup.backoff_max_s < sup.backoff_initial_s:
        yield (
            "supervision.backoff_max_s",
            f"must be >= supervision.backoff_initial_s ({sup.backoff_initial_s})",
        )
    if not settings.data_dir:
        yield "data_dir", "must not be empty"
    for field in ENDPOINT_FIELDS:
        try:
            check_endpoint(getattr(settings.runtime, field))
        except ValueError as exc:
            yield f"runtime.{field}", str(exc)
    for field in ("curve_server_key", "curve_secret_key"):
        key = getattr(settings.runtime, field)
        if key is not None and len(key.reveal()) != _Z85_KEY_LENGTH:
            yield f"runtime.{field}", f"expected a {_Z85_KEY_LENGTH}-character Z85 key"
    for name, peer in settings.peers.items():
        if peer.public_key and len(peer.public_key) != _Z85_KEY_LENGTH:
            yield f"peers.{name}.public_key", f"expected a {_Z85_KEY_LENGTH}-character Z85 key"
    for name in settings.accounts:
        yield from _account_problems(name, settings.account(name))
    yield from _parser_problems(settings)


def _parser_problems(settings: Settings) -> Iterator[tuple[str, str]]:
    parser = settings.parser
    for name in parser.readers:
        acc = settings.accounts.get(name)
        if acc is None:
            yield "parser.readers", f"reader {name!r} is not a configured account"
        elif acc.kind != "user":
            yield "parser.readers", f"reader {name!r} is a bot; only user accounts read channels"
    if len(set(parser.readers)) != len(parser.readers):
        yield "parser.readers", "a reader is listed twice"
    if not parser.reconcile_min_s <= parser.reconcile_s <= parser.reconcile_max_s:
        yield (
            "parser.reconcile_s",
            "must lie between parser.reconcile_min_s and parser.reconcile_max_s",
        )

    bot = settings.bot
    if bot.mode == "admins" and not bot.admins:
        yield "bot.admins", 'mode "admins" with no admins: nobody could use the bot'
    if bot.mode == "allowlist" and not (bot.allowlist or bot.admins):
        yield "bot.allowlist", 'mode "allowlist" with an empty allowlist and no admins'


def _account_problems(name: str, acc: AccountSettings) -> Iterator[tuple[str, str]]:
    """Problems of one account, given with its ``telegram`` defaults already applied."""
    path = f"accounts.{name}"
    # A custom server (the sandbox) does not check the application's credentials.
    if acc.server is None and acc.api_id is None:
        yield path, f"api_id is not set (set {path}.api_id or telegram.api_id)"
    if acc.server is None and not acc.api_hash:
        yield path, f"api_hash is not set (set {path}.api_hash or telegram.api_hash)"
    if acc.session_string and acc.session_file:
        yield path, "set either session_string or session_file, not both"
    if acc.session_string:
        try:
            check_string_session(acc.session_string.reveal())
        except ValueError as exc:
            yield f"{path}.session_string", str(exc)
    if acc.server is not None:
        yield from _server_problems(f"{path}.server", acc.server)
    for method_class in acc.limits:
        if method_class not in METHOD_CLASSES:
            known = ", ".join(METHOD_CLASSES)
            yield f"{path}.limits.{method_class}", f"unknown method class (known: {known})"
    has_session = bool(acc.session_string) or bool(acc.session_file)
    if acc.kind == "bot" and not acc.bot_token and not has_session:
        yield path, "a bot account needs bot_token (or an existing session_string/session_file)"
    if acc.kind == "user" and acc.bot_token:
        yield path, 'bot_token is set but kind is "user" (set kind = "bot")'


def _server_problems(path: str, server: ServerSettings) -> Iterator[tuple[str, str]]:
    """A custom server is only reachable with its RSA public key: without one Telethon
    cannot finish the key exchange and every request would end in a timeout."""
    if not server.public_key_file:
        yield (
            f"{path}.public_key_file",
            "a custom server needs its RSA public key (a PEM file; the sandbox writes "
            "data/sandbox/sandbox_rsa.pub.pem)",
        )
        return
    try:
        rsa_public_key_pem(server.public_key_file)
    except ValueError as exc:
        yield f"{path}.public_key_file", str(exc)
