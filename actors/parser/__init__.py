"""The channel monitor: ``parser:main`` keeps every post of every watched channel.

Guarantees (with the store's idempotent writes on ``(channel id, message id)``):

* **Every post, once.** Live posts, edits and deletions come from the session actors'
  events (``post.<channel_id>``), go to the store and are published on
  ``stored.<channel_id>`` only after the store committed them. Because the bus is at most
  once and Telegram withholds or drops updates, the parser also fetches history since the
  newest stored message id: for every channel at start, for a reader's channels when its
  session comes back, and periodically (the reconciler). Posts fetched twice are stored
  once; only what the store changed is published.
* **Rationed readers.** Channels go to the reader with the fewest channels, under its
  channel limit, not flood-waited, with resolve and join budget left. Resolves, joins and
  history calls are counted per reader against ``[parser]`` budgets; a request that would
  break one is answered ``FloodWait(retry_after)`` and nothing is sent to Telegram.
* **Failover.** A reader that is revoked, logged out, or flood-waited longer than
  ``move_after_flood_s`` hands its channels to other readers (they join them there), as
  far as their limits and join budgets allow; the rest wait and are retried.
* **Adaptive reconciling.** Each channel is checked within ``reconcile_min_s`` ..
  ``reconcile_max_s``: a check that found missing posts shortens its period to the
  minimum, live posts without losses double it, a quiet channel returns to
  ``reconcile_s``. Checks never exceed a reader's ``calls_per_min``; one check is one
  history call that also fetches what is missing.

Every state of the actor lives on the process's asyncio loop (all handlers are
coroutines), so nothing needs a thread lock; per channel, an asyncio lock orders writes.

Modules: :mod:`.actor` (the class, its lifecycle and boot), :mod:`.requests` (AddChannel,
RemoveChannel, GetParserStatus), :mod:`.readers` (choosing, joining, failover),
:mod:`.rations` (quotas and buckets), :mod:`.posts` (live events and writes to the store),
:mod:`.reconciler` (periodic catch-up), :mod:`.watch` (one watched channel),
:mod:`.parsing` (channel references and posts, pure: no I/O).
"""

from actors.parser.actor import ParserActor
from actors.parser.rations import Bucket, Quota
from protocols.parser import PARSER_ADDRESS
from protocols.store import STORE_ADDRESS

__all__ = ["PARSER_ADDRESS", "STORE_ADDRESS", "Bucket", "ParserActor", "Quota"]
