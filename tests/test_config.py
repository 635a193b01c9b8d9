"""Settings: TOML file, environment overrides, errors that say what and where, secrets hidden."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from telethon.crypto import AuthKey
from telethon.sessions import StringSession

from config import (
    ConfigError,
    Secret,
    Settings,
    dump_settings,
    enc_hook,
    load_settings,
    reveal_enc_hook,
)
from config.settings import with_local_endpoints

BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"
SERVER_KEY = rsa.generate_private_key(65537, 2048)


def _string_session() -> str:
    session = StringSession()
    session.set_dc(2, "149.154.167.51", 443)
    session.auth_key = AuthKey(bytes(range(256)))
    return session.save()


SESSION_STRING = _string_session()
API_HASH = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_settings(None, ...) reads ./switchboard.toml; keep the repository's out of it.
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "switchboard.toml"
    path.write_text(text)
    return path


def key_file(tmp_path: Path, fmt: str = "pkcs1") -> Path:
    """A custom server's RSA public key as a PEM file (PKCS#1 or SubjectPublicKeyInfo)."""
    formats = {"pkcs1": PublicFormat.PKCS1, "spki": PublicFormat.SubjectPublicKeyInfo}
    path = tmp_path / f"server.{fmt}.pem"
    path.write_bytes(SERVER_KEY.public_key().public_bytes(Encoding.PEM, formats[fmt]))
    return path


def load_error(path: Path | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env or {})
    return str(info.value)


def test_defaults_without_file() -> None:
    settings = load_settings(None, {})
    assert settings == with_local_endpoints(Settings())
    assert settings.runtime.max_frame_bytes == 1_048_576
    # One host by default: ipc sockets in the data dir, reachable by this user only.
    sockets = Path("data", "sockets").absolute()
    assert settings.runtime.broker_endpoint == f"ipc://{sockets}/broker.sock"
    assert settings.runtime.events_in_endpoint == f"ipc://{sockets}/events-in.sock"
    assert settings.runtime.events_out_endpoint == f"ipc://{sockets}/events-out.sock"
    assert settings.supervision.max_restarts == 5
    assert settings.api.host == "127.0.0.1"
    assert settings.accounts == {}


def test_default_path_is_switchboard_toml_in_cwd(tmp_path: Path) -> None:
    write(tmp_path, "data_dir = 'elsewhere'\n")
    assert load_settings(None, {}).data_dir == "elsewhere"


def test_env_none_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD__API__PORT", "9001")
    assert load_settings().api.port == 9001


def test_full_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
data_dir = "/var/lib/switchboard"
[runtime]
broker_endpoint = "tcp://127.0.0.1:5555"
heartbeat_interval_s = 2          # an int where a float is expected is fine
[supervision]
max_restarts = 0
[log]
level = "DEBUG"
format = "json"
[telegram]
api_id = 12345
api_hash = "{API_HASH}"
[accounts.alice]
phone = "+15550001"
[accounts.news-bot]
kind = "bot"
bot_token = "{BOT_TOKEN}"
api_id = 999
[accounts.news-bot.server]
host = "127.0.0.1"
port = 4430
public_key_file = "{key_file(tmp_path)}"
[api]
port = 0
""",
    )
    settings = load_settings(path, {})
    assert settings.runtime.heartbeat_interval_s == 2.0
    assert settings.supervision.max_restarts == 0
    assert settings.log.format == "json"
    bot = settings.accounts["news-bot"]
    assert bot.kind == "bot"
    assert bot.bot_token == Secret(BOT_TOKEN)
    assert bot.server is not None and bot.server.port == 4430 and bot.server.dc_id == 2
    alice = settings.account("alice")
    assert alice.api_id == 12345 and alice.api_hash == Secret(API_HASH)
    assert settings.account("news-bot").api_id == 999


def test_wrong_type_names_file_key_and_types(tmp_path: Path) -> None:
    path = write(tmp_path, '[runtime]\nmax_frame_bytes = "big"\n')
    message = load_error(path)
    assert message == f"{path}: runtime.max_frame_bytes: expected int > 0, got str"


def test_unknown_key_is_an_error_with_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[runtime]\nmax_frame_byts = 10\n")
    message = load_error(path)
    assert f"{path}: unknown key 'runtime.max_frame_byts'" in message
    assert "did you mean 'runtime.max_frame_bytes'" in message


def test_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, "[runtim]\n")
    assert "unknown key 'runtim'" in load_error(path)


def test_missing_required_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[telegram]\napi_id = 1\napi_hash = "{API_HASH}"\n'
        '[accounts.alice.server]\nhost = "127.0.0.1"\n',
    )
    message = load_error(path)
    assert "accounts.alice.server: missing required key 'port'" in message
    assert "expected int" in message


def test_account_without_api_credentials(tmp_path: Path) -> None:
    path = write(tmp_path, '[accounts.alice]\nphone = "+1555"\n')
    message = load_error(path)
    assert "accounts.alice: api_id is not set" in message
    assert "accounts.alice: api_hash is not set" in message


def test_bot_account_needs_bot_token_or_session(tmp_path: Path) -> None:
    base = f'[telegram]\napi_id = 1\napi_hash = "{API_HASH}"\n[accounts.alice]\nkind = "bot"\n'
    path = write(tmp_path, base)
    assert f"{path}: accounts.alice: a bot account needs bot_token" in load_error(path)
    write(tmp_path, base + 'session_file = "alice.session"\n')
    assert load_settings(path, {}).accounts["alice"].kind == "bot"


def test_range_and_choice_checks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[runtime]\nheartbeat_liveness = 0\nrequest_timeout_s = -1.5\n"
        '[api]\nport = 70000\n[log]\nformat = "xml"\nlevel = "loud"\n',
    )
    message = load_error(path)
    assert "runtime.heartbeat_liveness: expected int > 0, got 0" in message
    assert "runtime.request_timeout_s: expected float > 0, got -1.5" in message
    assert "api.port: expected int >= 0 and <= 65535, got 70000" in message
    assert "log.format: expected one of 'auto', 'console', 'json', got 'xml'" in message


def test_log_level_is_validated(tmp_path: Path) -> None:
    path = write(tmp_path, '[log]\nlevel = "loud"\n')
    assert "log.level: expected one of debug, info, warning, error, critical" in load_error(path)


def test_invalid_account_name(tmp_path: Path) -> None:
    path = write(tmp_path, "[accounts.Alice]\n")
    assert "accounts.Alice: invalid name 'Alice'" in load_error(path)


def test_invalid_toml_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[runtime]\nmax_frame_bytes = \n")
    message = load_error(path)
    assert message.startswith(f"{path}: invalid TOML")
    assert "line 2" in message


def test_missing_explicit_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert load_error(path).startswith(f"{path}: cannot read")


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, '[runtime]\nmailbox_size = "x"\nbogus = 1\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, {"SWITCHBOARD__API__PORT": "http"})
    problems = info.value.problems
    assert {p.source for p in problems} == {str(path), "SWITCHBOARD__API__PORT"}
    assert len(problems) == 3


def test_env_overrides_file_with_type_conversion(tmp_path: Path) -> None:
    path = write(tmp_path, "[runtime]\nmax_frame_bytes = 100\n")
    env = {
        "SWITCHBOARD__RUNTIME__MAX_FRAME_BYTES": "2048",
        "switchboard__runtime__heartbeat_interval_s": "0.25",
        "SWITCHBOARD__ACCOUNTS__ALICE__PHONE": "+15550001",
        "SWITCHBOARD__ACCOUNTS__ALICE__EXPORT_ALLOWED": "client:*, api",
        "SWITCHBOARD__ACCOUNTS__ALICE__SESSION_FILE": "",
        "SWITCHBOARD__ACCOUNTS__ALICE__SERVER__HOST": "127.0.0.1",
        "SWITCHBOARD__ACCOUNTS__ALICE__SERVER__PORT": "4430",
        "SWITCHBOARD__ACCOUNTS__ALICE__SERVER__PUBLIC_KEY_FILE": str(key_file(tmp_path)),
        "SWITCHBOARD__LOG__FORMAT": "JSON",
        "SWITCHBOARD__API__TOKEN": "api-token-value",
        "SWITCHBOARD__TELEGRAM__API_ID": "7",
        "SWITCHBOARD__TELEGRAM__API_HASH": API_HASH,
        "SWITCHBOARD__DATA_DIR": "/tmp/sb",
        "UNRELATED": "ignored",
    }
    settings = load_settings(path, env)
    assert settings.runtime.max_frame_bytes == 2048
    assert settings.runtime.heartbeat_interval_s == 0.25
    alice = settings.accounts["alice"]
    assert alice.phone == "+15550001" and alice.export_allowed == ["client:*", "api"]
    assert alice.session_file is None
    assert alice.server is not None and alice.server.port == 4430
    assert settings.log.format == "json"
    assert settings.api.token == Secret("api-token-value")
    assert settings.data_dir == "/tmp/sb"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "SWITCHBOARD__RUNTIME__HEARTBEAT_LIVENESS",
            "many",
            "SWITCHBOARD__RUNTIME__HEARTBEAT_LIVENESS: runtime.heartbeat_liveness: "
            "expected int > 0, got 'many'",
        ),
        (
            "SWITCHBOARD__ACCOUNTS__ALICE__KIND",
            "robot",
            "expected one of",
        ),
        ("SWITCHBOARD__RUNTIME__MAX_FRAME_BYTS", "1", "unknown key 'runtime.max_frame_byts'"),
        ("SWITCHBOARD__RUNTIME", "1", "'runtime' is a table"),
        ("SWITCHBOARD__API__PORT__X", "1", "unknown key 'api.port.x'"),
        ("SWITCHBOARD__API__PORT", "0x50", "api.port: expected int"),
        ("SWITCHBOARD__RUNTIME__HEARTBEAT_INTERVAL_S", "nan", "expected float > 0, got 'nan'"),
    ],
)
def test_bad_env_values(name: str, value: str, expected: str) -> None:
    message = load_error(None, {name: value})
    assert message.startswith(f"{name}: ")
    assert expected in message


def test_env_range_checked_after_conversion() -> None:
    message = load_error(None, {"SWITCHBOARD__RUNTIME__MAILBOX_SIZE": "0"})
    assert (
        message
        == "SWITCHBOARD__RUNTIME__MAILBOX_SIZE: runtime.mailbox_size: expected int > 0, got 0"
    )


def test_telegram_aliases_for_a_single_account() -> None:
    env = {
        "TELEGRAM__API_ID": "12345",
        "TELEGRAM__API_HASH": API_HASH,
        "TELEGRAM__SESSION_STRING": SESSION_STRING,
        "TELEGRAM__SOMETHING_ELSE": "another tool's setting",
    }
    settings = load_settings(None, env)
    assert settings.telegram.api_id == 12345
    assert settings.telegram.api_hash == Secret(API_HASH)
    assert list(settings.accounts) == ["main"]
    assert settings.accounts["main"].session_string == Secret(SESSION_STRING)


def test_session_string_goes_to_the_only_configured_account(tmp_path: Path) -> None:
    path = write(tmp_path, f'[telegram]\napi_id = 1\napi_hash = "{API_HASH}"\n[accounts.alice]\n')
    settings = load_settings(path, {"TELEGRAM__SESSION_STRING": SESSION_STRING})
    assert list(settings.accounts) == ["alice"]
    assert settings.accounts["alice"].session_string == Secret(SESSION_STRING)


def test_switchboard_names_win_over_telegram_aliases() -> None:
    env = {
        "TELEGRAM__API_ID": "1",
        "SWITCHBOARD__TELEGRAM__API_ID": "2",
        "TELEGRAM__API_HASH": API_HASH,
    }
    assert load_settings(None, env).telegram.api_id == 2


def test_ambiguous_session_string(tmp_path: Path) -> None:
    path = write(tmp_path, f'[telegram]\napi_id = 1\napi_hash = "{API_HASH}"\n[accounts.alice]\n')
    env = {"TELEGRAM__SESSION_STRING": SESSION_STRING, "SWITCHBOARD__ACCOUNTS__BOB__PHONE": "+1"}
    message = load_error(path, env)
    assert message.startswith(
        "TELEGRAM__SESSION_STRING: several accounts are configured (alice, bob)"
    )
    assert "SWITCHBOARD__ACCOUNTS__<NAME>__SESSION_STRING" in message
    assert SESSION_STRING not in message


def test_secret_repr_str_format_and_equality() -> None:
    secret = Secret(BOT_TOKEN)
    assert repr(secret) == "Secret('***')"
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert secret.reveal() == BOT_TOKEN
    assert secret == Secret(BOT_TOKEN)
    assert secret != Secret("other")
    assert secret != BOT_TOKEN
    assert hash(secret) == hash(Secret(BOT_TOKEN))
    assert pickle.loads(pickle.dumps(secret)) == secret
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]


def test_secrets_never_in_repr_or_encoding(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[telegram]\napi_id = 1\napi_hash = "{API_HASH}"\n'
        f'[accounts.bot]\nkind = "bot"\nbot_token = "{BOT_TOKEN}"\n'
        f'session_string = "{SESSION_STRING}"\n',
    )
    settings = load_settings(path, {"SWITCHBOARD__API__TOKEN": "api-token-value"})
    secrets = (API_HASH, BOT_TOKEN, SESSION_STRING, "api-token-value")
    texts = [
        repr(settings),
        str(settings),
        str(dump_settings(settings)),
        msgspec.json.encode(settings, enc_hook=enc_hook).decode(),
        repr(msgspec.msgpack.decode(msgspec.msgpack.encode(settings, enc_hook=enc_hook))),
    ]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert dump_settings(settings)["accounts"]["bot"]["bot_token"] == "***"
    revealed = msgspec.json.decode(msgspec.json.encode(settings, enc_hook=reveal_enc_hook))
    assert revealed["accounts"]["bot"]["bot_token"] == BOT_TOKEN
    assert dump_settings(settings, reveal=True)["api"]["token"] == "api-token-value"


def test_secrets_never_in_error_messages(tmp_path: Path) -> None:
    # A bot token in a field of the wrong type, an api_hash where the api_id belongs, secrets
    # under unknown keys and in an unrelated failing account: none may be echoed back.
    path = write(
        tmp_path,
        f'[telegram]\napi_id = "{API_HASH}"\n'
        f'[accounts.alice]\nkind = "bot"\nbot_tokn = "{BOT_TOKEN}"\nphone = 5\n'
        f'[log]\nformat = "{SESSION_STRING}"\n',
    )
    env = {
        "TELEGRAM__API_ID": API_HASH,
        "SWITCHBOARD__ACCOUNTS__ALICE__EXPORT_ALOWED": BOT_TOKEN,
        "SWITCHBOARD__ACCOUNTS__ALICE__SESSION_STRNG": SESSION_STRING,
    }
    message = load_error(path, env)
    for secret in (API_HASH, BOT_TOKEN, SESSION_STRING):
        assert secret not in message
    assert "unknown key 'accounts.alice.bot_tokn'" in message
    assert "accounts.alice.session_strng" in message


def test_config_error_is_an_exception_with_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "[api]\nport = 'x'\n")
    with pytest.raises(Exception) as info:
        load_settings(path, {})
    assert isinstance(info.value, ConfigError)
    (problem,) = info.value.problems
    assert (problem.source, problem.key) == (str(path), "api.port")


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.data_dir = "x"  # type: ignore[misc]


def test_env_is_not_read_when_a_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD__API__PORT", "not a number")
    assert load_settings(None, {}).api.port == 8080
    assert os.environ["SWITCHBOARD__API__PORT"] == "not a number"


@pytest.mark.parametrize("fmt", ["pkcs1", "spki"])
def test_server_key_in_either_pem_format_is_accepted(tmp_path: Path, fmt: str) -> None:
    path = write(
        tmp_path,
        f'[accounts.alice.server]\nhost = "127.0.0.1"\nport = 4430\n'
        f'public_key_file = "{key_file(tmp_path, fmt)}"\n',
    )
    assert load_settings(path, {}).accounts["alice"].server is not None


def test_custom_server_without_a_key_is_refused_at_load(tmp_path: Path) -> None:
    path = write(tmp_path, '[accounts.alice.server]\nhost = "127.0.0.1"\nport = 4430\n')
    message = load_error(path)
    expected = f"{path}: accounts.alice.server.public_key_file: a custom server needs its RSA"
    assert expected in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        (b"not a key", "is not a PEM public key"),
        ("ec", "holds an ECPublicKey, not an RSA public key"),
    ],
)
def test_server_key_that_is_not_an_rsa_public_key_is_refused(
    tmp_path: Path, content: bytes | str | None, expected: str
) -> None:
    key = tmp_path / "server.pem"
    if content == "ec":
        ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        key.write_bytes(ec_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    elif isinstance(content, bytes):
        key.write_bytes(content)
    path = write(
        tmp_path,
        f'[accounts.alice.server]\nhost = "127.0.0.1"\nport = 4430\npublic_key_file = "{key}"\n',
    )
    message = load_error(path)
    assert "accounts.alice.server.public_key_file: " in message and expected in message


def test_invalid_session_string_is_refused_without_showing_it(tmp_path: Path) -> None:
    broken = SESSION_STRING[:-7]
    message = load_error(None, {"SWITCHBOARD__ACCOUNTS__ALICE__SESSION_STRING": broken})
    assert "accounts.alice.session_string: not a valid StringSession" in message
    assert broken not in message


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("tcp://127.0.0.1", "is not a ZeroMQ endpoint (expected tcp://HOST:PORT"),
        ("127.0.0.1:7750", "is not a ZeroMQ endpoint"),
        ("tcp://127.0.0.1:70000", "port 70000 is out of range 1-65535"),
    ],
)
def test_malformed_endpoint_is_refused_at_load(endpoint: str, expected: str) -> None:
    message = load_error(None, {"SWITCHBOARD__RUNTIME__EVENTS_OUT_ENDPOINT": endpoint})
    assert "SWITCHBOARD__RUNTIME__EVENTS_OUT_ENDPOINT: runtime.events_out_endpoint: " in message
    assert expected in message
