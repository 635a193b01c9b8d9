"""Typed settings from ``switchboard.toml`` plus environment overrides, and the secret type."""

from config.errors import ConfigError, Problem
from config.loader import (
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    accounts_toml,
    convert_settings,
    load_settings,
)
from config.secrets import REDACTED, Secret, dec_hook, enc_hook, redact_text, reveal_enc_hook
from config.settings import (
    LOG_LEVELS,
    AccountSettings,
    ApiSettings,
    BotSettings,
    DeliverySettings,
    LogSettings,
    ParserSettings,
    RateLimitSettings,
    RuntimeSettings,
    ServerSettings,
    SessionSettings,
    Settings,
    SupervisionSettings,
    TelegramSettings,
    dump_settings,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "LOG_LEVELS",
    "REDACTED",
    "AccountSettings",
    "ApiSettings",
    "BotSettings",
    "ConfigError",
    "DeliverySettings",
    "LogSettings",
    "ParserSettings",
    "Problem",
    "RateLimitSettings",
    "RuntimeSettings",
    "Secret",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "SupervisionSettings",
    "TelegramSettings",
    "accounts_toml",
    "convert_settings",
    "dec_hook",
    "dump_settings",
    "enc_hook",
    "load_settings",
    "redact_text",
    "reveal_enc_hook",
]
