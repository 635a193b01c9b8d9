"""The application database behind ``store:main``: one method per request, SQLite inside.

:class:`Store` is the narrow interface the StoreActor (:mod:`actors.store`) maps its
messages to: each public method takes one request of :mod:`protocols.store` and returns
its reply, or raises :class:`StoreError` carrying the typed error to answer
(``BadRequest``, ``NotFound``), in which case nothing was written. Nothing here knows of
actors or ZeroMQ, so ``Store(":memory:")`` works in a test, and another engine
(PostgreSQL) is another class with the same methods.

Every write method is one transaction, or a savepoint inside the caller's transaction; a
committed write survives the process being killed (see :mod:`.database`). Post text is
indexed for full-text search by the Store itself, written at each commit, so search sees
committed posts. The connection belongs to the thread that built the Store.

Modules: :mod:`.database` (the file, transactions, the full-text index queue),
:mod:`.migrations` (the schema), :mod:`.checks` (input checks and refusals),
:mod:`.channels` (channels and subscriptions), :mod:`.posts` (posts, pages, search),
:mod:`.delivery` (cursors and deliveries), :mod:`.store` (the Store, its statistics).
"""

from actors.storage.checks import Invalid, Missing, StoreError
from actors.storage.database import Synchronous
from actors.storage.store import Store

__all__ = ["Invalid", "Missing", "Store", "StoreError", "Synchronous"]
