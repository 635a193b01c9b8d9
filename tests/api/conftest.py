"""The API against a real system: a sandbox, a broker and nodes as ``run.py`` processes.

``api_system`` (one per test module) runs a broker, a node hosting the store, the parser
and the session actors of users ``alice`` (logged in; the parser's reader), ``bob`` (not
logged in) and ``carol`` (not logged in, with a two-step password),
and the API actor in a node process of its own, on a free port, with a token. The sandbox
has a public channel ``@apinews`` with three posts, not watched yet. Tests talk
to it over HTTP as anyone would; ``app_client`` serves :func:`actors.api.create_app` in
this process over a real :class:`runtime.client.AsyncClient` to the same broker, for the
per-endpoint cases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from actors.api import create_app
from config import Secret, load_settings
from protocols import session as s
from sandbox import SandboxThread
from tests.runtime.support import START_S, Proc, free_port, wait_until
from tests.session.conftest import Sessions
from tests.session.support import Phones, log_in

TOKEN = "test-api-token-0123456789"
CHANNEL = "apinews"
POSTS = ("first post about otters", "second post about badgers", "third post about otters")
MONITOR = "parser=parser:main,store=store:main"
PASSWORD = "correct horse"
HINT = "the horse"


@dataclass
class ApiSystem:
    sessions: Sessions
    sandbox: SandboxThread
    api: Proc
    url: str
    alice: s.User
    bob_phone: str
    bob: s.User
    carol_phone: str

    def start_api(self, name: str, port: int, token: str | None = TOKEN) -> Proc:
        """A node process hosting only ``api:main`` on ``port``; waits until it serves."""
        return start_api(self.sessions, name, port, token)

    def headers(self, token: str = TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def start_api(sessions: Sessions, name: str, port: int, token: str | None) -> Proc:
    sessions.overrides["SWITCHBOARD__API__PORT"] = str(port)
    sessions.overrides["SWITCHBOARD__API__TOKEN"] = token or ""
    return sessions.serving_node(name, "api=api:main", "api serving", "--accounts", "")


@pytest.fixture(scope="module")
def api_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiSystem]:
    sandbox = SandboxThread().start()
    sessions = Sessions(tmp_path_factory.mktemp("api"), sandbox=sandbox)
    try:
        alice_phone, alice = sessions.add_user("alice")
        bob_phone, bob = sessions.add_user("bob")
        carol_phone, carol = sessions.add_user("carol")
        sandbox.control.set_password(carol.id, PASSWORD, HINT)
        sandbox.control.create_channel("API news", username=CHANNEL)
        for text in POSTS:
            sandbox.control.post(CHANNEL, text)
        sessions.accounts["~parser"] = '[parser]\nreaders = ["alice"]'  # a section, not an account
        sessions.write_config()
        sessions.run_broker()
        sessions.node("n1", "alice,bob,carol", "--actors", MONITOR)
        hosted = {"session:alice", "session:bob", "session:carol", "parser:main", "store:main"}
        wait_until(
            lambda: hosted <= {a.address for a in sessions.status().addresses},
            START_S,
            "n1 to host every address",
        )
        with sessions.client() as client:
            alice = log_in(sessions, client, "alice", alice_phone)
            sessions.wait_state(client, "bob", "unauthorized")
        port = free_port()
        api = start_api(sessions, "api1", port, TOKEN)
        yield ApiSystem(
            sessions, sandbox, api, f"http://127.0.0.1:{port}", alice, bob_phone, bob, carol_phone
        )
    finally:
        sessions.stop_all()
        sandbox.stop()


@pytest.fixture
def phones(api_system: ApiSystem) -> Iterator[Phones]:
    """Telethon clients of sandbox users: the phone that accepts a QR login."""
    phones = Phones(api_system.sandbox)
    yield phones
    phones.close()


@pytest.fixture
async def app_client(api_system: ApiSystem) -> AsyncIterator[TestClient]:
    """:func:`create_app` served in this process, over a real client of the test broker."""
    settings = load_settings(api_system.sessions.write_config(), env={})
    settings = msgspec.structs.replace(
        settings, api=msgspec.structs.replace(settings.api, token=Secret(TOKEN))
    )
    runtime_client = api_system.sessions.async_client()
    async with runtime_client, TestClient(TestServer(create_app(runtime_client, settings))) as c:
        yield c
