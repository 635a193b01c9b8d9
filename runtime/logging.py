"""Structured logging for every process: one output, context bound per actor, no secrets.

`configure_logging` sets up structlog and routes the standard library's logging (Telethon,
aiohttp, asyncio) into the same stream and format. Context such as ``node``, ``actor``,
``address`` and ``request_id`` is bound with ``structlog.contextvars.bound_contextvars`` and
appears on every line logged inside it. Every line passes `redact_secrets` last before it is
rendered, tracebacks included.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, ExcInfo, Processor, WrappedLogger

from config.secrets import REDACTED, Secret, redact_text

__all__ = [
    "FORMATS",
    "LEVELS",
    "SENSITIVE_KEY_PARTS",
    "LogThrottle",
    "configure_logging",
    "redact_secrets",
]

LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS = ("auto", "console", "json")
# A key containing any of these (case-insensitive, "-" read as "_") has its value hidden.
SENSITIVE_KEY_PARTS = (
    "api_hash",
    "bot_token",
    "session_string",
    "auth_key",
    "token",
    "password",
    "secret",
)
_DEFAULT_LOGGER_NAME = "switchboard"
# Keys structlog and ProcessorFormatter use for their own bookkeeping: not rendered as is
# (exc_info is rendered by the exception formatter, whose output is redacted separately).
_INTERNAL_KEYS = frozenset({"exc_info", "_record", "_from_structlog"})
# Deeper structures are rendered by repr and redacted as text, so a cycle cannot recurse.
_MAX_DEPTH = 8

# The stdlib handler this module installed, so a second call replaces it instead of adding.
_installed_handler: logging.Handler | None = None


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    *,
    stdlib_level: str = "warning",
) -> None:
    """Send structlog and stdlib logging to ``stream`` (default stderr), secrets redacted.

    ``fmt`` "auto" renders for a human when ``stream`` is a terminal and as JSON lines
    otherwise. structlog loggers log at ``level`` and above; stdlib loggers at
    ``stdlib_level`` or ``level``, whichever is higher. Safe to call again: the new settings
    replace the old ones. Raises ValueError for an unknown level or format.
    """
    global _installed_handler
    level_no = _level_number(level)
    stdlib_level_no = max(_level_number(stdlib_level), level_no)
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    out = stream if stream is not None else sys.stderr
    is_tty = bool(getattr(out, "isatty", lambda: False)())
    console = fmt == "console" or (fmt == "auto" and is_tty)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if console:
        # The console renderer formats exc_info itself, through our redacting formatter.
        tail: list[Processor] = [redact_secrets]
        renderer = structlog.dev.ConsoleRenderer(
            colors=is_tty, exception_formatter=_redacted_traceback
        )
    else:
        # Render the traceback to text first so that redaction sees it.
        tail = [structlog.processors.format_exc_info, redact_secrets]
        renderer = structlog.processors.JSONRenderer()

    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=_NamedWriteLoggerFactory(out),
        context_class=dict,
        # Not cached: a later call (another stream, another level) must reach loggers that
        # modules created at import time.
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tail,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    if _installed_handler is not None:
        root.removeHandler(_installed_handler)
    root.addHandler(handler)
    root.setLevel(stdlib_level_no)
    _installed_handler = handler


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: hide every secret in ``event_dict``.

    Guarantees that no `Secret` value, no value under a sensitive key (see
    `SENSITIVE_KEY_PARTS`), no bot-token or StringSession shape and no known secret value
    (see `config.secrets.redact_text`) is left in any key, however deeply nested. Objects of
    other types are replaced by their redacted repr, which is what the renderers would show.
    """
    for key, value in event_dict.items():
        if key in _INTERNAL_KEYS:
            continue
        event_dict[key] = _redact_item(key, value, 0)
    return event_dict


def _is_sensitive(key: object) -> bool:
    name = str(key).lower().replace("-", "_")
    return any(part in name for part in SENSITIVE_KEY_PARTS)


def _redact_item(key: object, value: Any, depth: int) -> Any:
    if value is not None and _is_sensitive(key):
        return REDACTED
    return _redact_value(value, depth)


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, dict):
            return {k: _redact_item(k, v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [_redact_value(v, depth + 1) for v in value]
    return redact_text(repr(value))


def _redacted_traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    """ConsoleRenderer exception formatter: the plain traceback, redacted.

    Plain (not rich) on purpose: rich shows locals and wraps long lines, which would split a
    token across lines where no pattern can find it.
    """
    buffer = io.StringIO()
    structlog.dev.plain_traceback(buffer, exc_info)
    sio.write(redact_text(buffer.getvalue()))


def _level_number(level: str) -> int:
    try:
        return LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}: expected one of {', '.join(LEVELS)}"
        ) from None


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger with a ``name``, for ``structlog.stdlib.add_logger_name``."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    """Makes loggers writing to one stream, named by ``structlog.get_logger(name)``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        name = args[0] if args and isinstance(args[0], str) else _DEFAULT_LOGGER_NAME
        return _NamedWriteLogger(self._stream, name)


class LogThrottle:
    """One event that outsiders can make us log, logged at a bounded rate.

    For input a peer controls (malformed frames, say): the first ``burst`` occurrences in
    an interval of ``interval_s`` seconds are logged as they come, with their fields; the
    rest are only counted, and the first occurrence after the interval logs one line with
    ``suppressed`` (how many were not shown) before a new interval starts. So a flood costs
    at most ``burst + 1`` lines per interval and nothing is hidden without a count.
    Thread-safe.
    """

    def __init__(
        self,
        logger: Any,
        event: str,
        *,
        burst: int = 5,
        interval_s: float = 60.0,
        level: str = "warning",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = getattr(logger, level)
        self._event = event
        self._burst = burst
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._logged = 0
        self._suppressed = 0

    def __call__(self, **fields: Any) -> None:
        """Record one occurrence; log it unless this interval's burst is used up."""
        with self._lock:
            now = self._clock()
            suppressed = 0
            if now - self._started >= self._interval_s:
                suppressed, self._suppressed = self._suppressed, 0
                self._started, self._logged = now, 0
            show = self._logged < self._burst
            if show:
                self._logged += 1
            else:
                self._suppressed += 1
        if suppressed:
            self._log(f"{self._event} (more not shown)", suppressed=suppressed)
        if show:
            self._log(self._event, **fields)
