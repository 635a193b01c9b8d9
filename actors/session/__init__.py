"""The session actor: the only code that touches one Telegram account.

``session:<account>`` owns one Telethon ``TelegramClient`` and its session storage for
the actor's whole life. Guarantees:

* **Single owner.** The broker grants the address to one node; on top of that, a session
  file is held under an OS lock (:class:`runtime.locks.SessionFileLock`) from start to
  stop, so a second owner on the same host fails at once, naming the holder's pid.
* **Serialized access.** Every Telegram call and every touch of the session storage run on
  the process's one asyncio loop thread, so nothing ever writes the session concurrently.
  Calls with side effects (send, edit, join, leave, answer, log in or out) pass one at a
  time, in arrival order, through a FIFO gate; reads are pipelined over the one connection.
* **Flood control.** Proactive token buckets per method class, and FloodWait recorded per
  method: a request of a flood-waited method waits if its deadline allows, else it is
  answered ``FloodWait(retry_after)`` at once. A wait never blocks other methods — it is
  spent outside the gate.
* **Watchdog.** With no update for ``watchdog_interval_s`` a cheap request checks the
  connection; a silent or dropped connection is reconnected with capped exponential
  backoff, forever, every change published as a ``SessionState`` event. After every
  (re)connect, missed updates are caught up explicitly.
* **Nothing lost, nothing twice.** Update state and entities are saved to the session as
  they advance (every ``state_save_interval_s`` while changing), so a restart resumes from
  where it stopped; Telethon's update state deduplicates what is caught up.

Modules: :mod:`.actor` (the class, lifecycle, error mapping), :mod:`.connection` (the
client, watchdog, the call path), :mod:`.requests` and :mod:`.login` (the handlers),
:mod:`.events` (updates to bus events). Telethon internals are reached only through
:mod:`actors.telethon_compat`.
"""

from actors.session.actor import SessionActor, open_session_file, session_address, session_path

__all__ = ["SessionActor", "open_session_file", "session_address", "session_path"]
