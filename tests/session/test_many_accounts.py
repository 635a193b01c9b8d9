"""Many accounts per node: 200 bot accounts in one node process, against the sandbox.

Every account authorizes and answers ``GetMe`` with its own bot, and the node's thread
count does not grow with the accounts (session actors' mailboxes live on the loop).
"""

from __future__ import annotations

import pytest

from protocols import session as s
from runtime.client import Client
from tests.runtime.support import Proc
from tests.session.conftest import Sessions
from tests.session.many import DEPLOYED_TIMING, add_bots, ask_all, node_figures, wait_authorized

ACCOUNTS = 200


@pytest.fixture
def broker(sessions: Sessions) -> Proc:
    """The broker, and every process after it, with the timing of a deployment."""
    sessions.overrides.update(DEPLOYED_TIMING)
    return sessions.run_broker()


def test_a_node_hosts_200_bot_accounts_that_all_answer_get_me(
    sessions: Sessions, broker: Proc, client: Client
) -> None:
    bots = add_bots(sessions, ACCOUNTS)
    node = sessions.node("many", ",".join(bots))
    wait_authorized(client, bots, timeout=300)
    replies = ask_all(client, [f"session:{name}" for name in bots], s.GetMe(), timeout=60)
    assert {
        target: reply.user.id for target, reply in replies.items() if isinstance(reply, s.Me)
    } == {f"session:{name}": bot_id for name, bot_id in bots.items()}
    _, threads = node_figures(node.pid)
    assert threads < ACCOUNTS / 4, f"{threads} threads for {ACCOUNTS} accounts"
