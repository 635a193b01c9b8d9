"""The session actor answers through the runtime, from another process, against the sandbox."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols import session as s
from runtime.client import Client
from tests.runtime.support import Proc
from tests.session.conftest import Sessions


def test_bot_session_answers_get_me(sessions: Sessions, broker: Proc, client: Client) -> None:
    bot = sessions.add_bot("alice")
    sessions.node("n1", "alice")
    sessions.wait_state(client, "alice", "authorized")
    me = client.request("session:alice", s.GetMe(), timeout=10)
    assert isinstance(me, s.Me)
    assert me.user.id == bot.id and me.user.bot


def test_server_key_as_subject_public_key_info_pem(
    sessions: Sessions, broker: Proc, client: Client
) -> None:
    # The same sandbox key, written as `BEGIN PUBLIC KEY` (what openssl prints by default).
    public = serialization.load_pem_public_key(sessions.key_file.read_bytes())
    sessions.key_file.write_bytes(
        public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    assert sessions.key_file.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    bot = sessions.add_bot("alice")
    sessions.node("n1", "alice")
    sessions.wait_state(client, "alice", "authorized")
    me = client.request("session:alice", s.GetMe(), timeout=10)
    assert me.user.id == bot.id
