"""What each authenticated peer may do on the broker, enforced packet by packet.

Who a connection's peer is comes from :mod:`runtime.auth` (CURVE and ZAP); this module
holds the broker's checks of each packet against that peer's rules. Guarantees, with
CURVE on:

* **Names.** A peer speaks only as the names it may use: its socket identity (the
  name before ``~``) and every address it claims (``Ready``, ``Claim``). A request sent
  as another name is answered ``Unauthorized``, a claim ``Refused``; anything else is
  dropped. These refusals are logged rate limited (peers control how many).
* **Requests.** A request goes only to targets the peer's ``send_to`` allows, and never
  carries a message type its ``deny`` lists; a refused one is logged and answered
  ``Unauthorized`` naming the rule. Replies always pass (they answer a request that
  passed).

Without CURVE every peer is local and may do everything (the ipc sockets admit this
Unix user only).
"""

from __future__ import annotations

import structlog

from protocols import errors
from protocols.broker import Claim, PeerInfo, Ready, Refused
from protocols.codec import body_type
from protocols.envelope import Envelope
from protocols.errors import Owner
from runtime.auth import LOCAL, Peer, PeerAuthenticator
from runtime.logging import LogThrottle
from runtime.router import SUBSOCKET_SEPARATOR, Router, peer_name

log = structlog.get_logger("broker")


class Permissions:
    """The broker's checks of who may speak as what and send what (broker thread only)."""

    def __init__(self, auth: PeerAuthenticator, router: Router) -> None:
        self._auth = auth
        self._router = router
        self._speaks_as = LogThrottle(log, "peer refused: speaks as a name it may not")

    def allow(self, identity: bytes, user_id: str | None, packet: object) -> bool:
        """Authentication: may the peer behind this connection use this identity (its name
        before ``~``) and claim these addresses? Refuses (logged, rate limited) if not."""
        peer = self._auth.peer(user_id)
        name = peer_name(identity).split(SUBSOCKET_SEPARATOR.decode())[0]
        claimed = [packet.address] if isinstance(packet, Claim) else []
        if isinstance(packet, Ready):
            claimed = list(packet.addresses)
        wrong = [n for n in [name, *claimed] if not peer.may_speak_as(n)]
        if not wrong:
            return not isinstance(packet, Envelope) or self._permitted(identity, peer, packet)
        self._speaks_as(peer=peer.name, name=wrong[0])
        reason = f"peer {peer.name!r} may not speak as {wrong[0]!r}"
        if isinstance(packet, Envelope):
            self._router.reply(identity, packet, errors.Unauthorized(message=reason))
        elif isinstance(packet, Ready | Claim):
            owner = Owner(node_id="", host="", pid=0, epoch=0)
            self._router.send(identity, Refused(address=wrong[0], owner=owner, reason=reason))
        return False

    def _permitted(self, identity: bytes, peer: Peer, env: Envelope) -> bool:
        """Authorization: may ``peer`` send this request? Replies always pass (they answer
        a request that passed); a refused one is answered Unauthorized naming the rule."""
        if peer.local or env.reply_to:
            return True
        message_type = body_type(env.body)
        rule = peer.refusal(env.target, message_type)
        if rule is None:
            return True
        log.warning(
            "request refused",
            peer=peer.name,
            sender=env.sender,
            target=env.target,
            type=message_type,
            rule=rule,
        )
        message = f"{message_type} to {env.target} refused: {rule}"
        self._router.reply(identity, env, errors.Unauthorized(message=message))
        return False


def peer_infos(auth: PeerAuthenticator | None) -> list[PeerInfo]:
    """Who may connect and what each may do: without CURVE, this host's user only."""
    infos = [PeerInfo(name=LOCAL, names=["*"], send_to=["*"])]
    for peer in auth.peers if auth is not None else []:
        names = list(peer.names or (peer.name, f"{peer.name}:*"))
        infos.append(
            PeerInfo(name=peer.name, names=names, send_to=list(peer.send_to), deny=list(peer.deny))
        )
    return infos
