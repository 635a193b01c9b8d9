"""The store conversation: what anyone may ask of ``store:main``, the application's record.

The store is the single writer of the application database: channels and their
add/remove audit, subscriptions, posts, per-channel progress, consumer cursors and
deliveries. Every reply is sent after its transaction committed, so an acknowledged write
survives a crash. Writes are idempotent on natural keys: putting the same post twice, or
subscribing twice, changes nothing the second time.

Every committed post (insert, edit or deletion) takes the next value of one store-wide
sequence, ``seq``. ``PostsSince(after_seq)`` pages through them in order, so a consumer
that keeps the last ``seq`` it processed misses nothing across its own restarts (the bus
only wakes it up; see :mod:`protocols.events`).

Invalid input is answered ``BadRequest`` (empty or oversized text, ids or limits out of
range, a bad full-text query) and an unknown channel ``NotFound``; nothing is written then.

Every list comes in pages that fit in a frame: a page holds at most ``limit`` rows, fewer
once their encoded size reaches ``PAGE_BYTES`` (never none while rows remain), and says
``more`` when rows follow. A list request's ``following(page)`` is the request for the
next page (after the last row's key), None after the last one.
"""

from __future__ import annotations

from typing import Literal

from msgspec.structs import replace

from protocols.base import Message, Request

STORE_ADDRESS = "store:main"  # where the store actor answers this conversation

MAX_TEXT = 65_536  # a post's text (Telegram allows 4,096, captions less; kept generous)
MAX_PAGE = 1000  # the largest ``limit`` of any paged request
LIST_PAGE = 500  # the default ``limit`` of ListChannels, ListSubscriptions, GetStoreStats
MAX_BATCH = 1000  # the most posts in one PutPosts
# A page of posts stops before its text passes this (UTF-8 bytes), a page of channels,
# subscriptions or channel stats before its rows' encoded size does: half a frame.
PAGE_BYTES = 512 * 1024

ChannelState = Literal["joining", "active", "moving", "paused", "failed", "removed"]
DeliveryStatus = Literal["pending", "sent", "failed", "skipped", "deleted"]
# Never sent again once recorded; only a "sent" copy may later become "deleted".
FINAL_DELIVERY: tuple[DeliveryStatus, ...] = ("sent", "skipped", "deleted")


# -- values ----------------------------------------------------------------------------


class Channel(Message):
    """A watched channel, with who reads it and how far it has been read.

    ``id`` is Telegram's marked id (``-100…``). ``last_message_id`` is the newest message
    id stored; ``lag_s`` how far behind the newest known post the store was at the last
    check.
    """

    id: int
    username: str = ""
    title: str = ""
    invite_link: str = ""
    reader: str = ""
    state: ChannelState = "active"
    added_by: str = ""
    added_at: int = 0
    last_message_id: int = 0
    last_post_at: int = 0
    last_check_at: int = 0
    lag_s: float = 0.0
    error: str = ""


class PostData(Message):
    """A post as the parser extracts it from a channel message.

    A post needs text or a media kind (a post with neither is ``BadRequest``); ``media``
    is a short lower-case word.
    """

    message_id: int
    date: int
    text: str = ""
    edit_date: int = 0
    media: str = ""  # "", "photo", "video", "document", "poll", ...
    views: int = 0
    forwards: int = 0


class Post(Message):
    """A stored post; ``seq`` is its place in the store-wide sequence of changes."""

    seq: int
    channel_id: int
    message_id: int
    date: int
    text: str = ""
    edit_date: int = 0
    media: str = ""
    views: int = 0
    forwards: int = 0
    deleted: bool = False


class Subscription(Message):
    """``subscriber`` (for example ``bot:newsbot:12345``) follows ``channel_id``.

    With ``keywords``, only posts whose text contains one of them (case-insensitive) are
    meant for the subscriber.
    """

    subscriber: str
    channel_id: int
    keywords: list[str] = []
    created_at: int = 0


class Delivery(Message):
    """One post delivered (or being delivered) to one subscriber by a bot.

    Keyed by ``(subscriber, channel_id, message_id)``. ``seq`` is the post's sequence
    number when it was delivered; ``sent_message_id`` the id of the message the bot sent
    (in the subscriber's chat). ``pending`` means a send may be under way (record it
    before sending, with the send's idempotency key derived from the key); ``sent``,
    ``skipped`` and ``deleted`` are final: a later record of the same key changes nothing,
    except that a ``sent`` copy may once become ``deleted`` (the bot deleted it from the
    subscriber's chat; ``sent_message_id`` is kept). ``attempts``
    counts the records of the key the store accepted; ``updated_at`` is set by the store.
    """

    subscriber: str
    channel_id: int
    message_id: int
    seq: int = 0
    status: DeliveryStatus = "sent"
    sent_message_id: int = 0
    error: str = ""
    attempts: int = 0
    updated_at: int = 0


class ChannelStats(Message):
    channel_id: int
    posts: int = 0
    last_message_id: int = 0
    last_post_at: int = 0
    lag_s: float = 0.0


# -- replies ----------------------------------------------------------------------------


class ChannelSaved(Message):
    channel: Channel
    created: bool = False


class ChannelDeleted(Message):
    channel_id: int
    existed: bool = True


class Channels(Message):
    """A page of channels in id order; ``more`` when channels follow (see ListChannels)."""

    channels: list[Channel] = []
    more: bool = False


class Subscribed(Message):
    subscription: Subscription
    created: bool = False


class Unsubscribed(Message):
    removed: bool = False


class Subscriptions(Message):
    """A page of subscriptions in ``(subscriber, channel_id)`` order; ``more`` when
    subscriptions follow (see ListSubscriptions)."""

    subscriptions: list[Subscription] = []
    more: bool = False


class PostsPut(Message):
    """What a write changed: new posts, edited ones, and the sequence after it.

    ``stored`` holds the posts this write inserted and ``edited`` those it changed (a
    newer edit, or marked deleted by ``DeletePosts``), each with its new ``seq``: what
    the parser publishes as ``PostStored`` / ``PostEdited`` / ``PostDeleted``.
    ``last_seq`` is the store's newest sequence after the commit, ``last_message_id``
    the channel's newest stored message id.
    """

    inserted: int = 0
    updated: int = 0
    last_seq: int = 0
    last_message_id: int = 0
    stored: list[Post] = []
    edited: list[Post] = []


class Posts(Message):
    """A page of posts; ``last_seq`` is the store's newest sequence at read time.

    ``more`` is True when posts follow this page: it holds ``limit`` posts, or fewer when
    their text reached ``PAGE_BYTES`` (so a page always fits in a frame; it holds at
    least one post). Ask again from its last post.
    """

    posts: list[Post] = []
    last_seq: int = 0
    more: bool = False


class Cursor(Message):
    name: str
    seq: int = 0


class DeliveryRecorded(Message):
    """The delivery as stored after the request; ``created`` if the key was new."""

    delivery: Delivery
    created: bool = False


class Deliveries(Message):
    deliveries: list[Delivery] = []


class StoreStats(Message):
    """Counts for status, and a page of ``per_channel`` stats in channel id order (``more``
    when channels follow, see GetStoreStats); ``commits`` counts transactions since the
    store opened (fewer than writes when writes were batched)."""

    channels: int = 0
    subscriptions: int = 0
    posts: int = 0
    last_seq: int = 0
    db_bytes: int = 0
    schema_version: int = 0
    per_channel: list[ChannelStats] = []
    commits: int = 0
    more: bool = False


# -- requests ---------------------------------------------------------------------------


class SaveChannel(Request[ChannelSaved]):
    """Create or update a channel (by ``channel.id``); ``by`` is recorded in the audit.

    Sets the channel's own fields (username, title, invite link, reader, state, added
    by, error); the progress fields (``last_message_id`` ... ``lag_s``) belong to the
    store and are ignored. ``added_at`` 0 means now. Creating a channel, or saving a
    removed one in another state, is an ``add`` in the audit.
    """

    channel: Channel
    by: str = ""


class DeleteChannel(Request[ChannelDeleted]):
    """Stop keeping a channel: state ``removed``, its subscriptions dropped, its posts kept.

    ``existed`` is False (and nothing changes) for an unknown or already removed channel.
    """

    channel_id: int
    by: str = ""


class GetChannel(Request[Channel]):
    """One channel by id or username; ``NotFound`` if the store has none."""

    channel_id: int = 0
    username: str = ""


class ListChannels(Request[Channels]):
    """A page of channels in id order, optionally only one reader's or one state's;
    removed ones only if asked (``state="removed"``).

    The page starts after the channel id ``after_id`` (0, never an id: from the first)
    and holds at most ``limit`` channels (1 to ``MAX_PAGE``), fewer once their encoded
    size reaches ``PAGE_BYTES``.
    """

    reader: str = ""
    state: str = ""
    after_id: int = 0
    limit: int = LIST_PAGE

    def following(self, page: Channels) -> ListChannels | None:
        """The request for the page after ``page``; None if it was the last."""
        if not (page.more and page.channels):
            return None
        return replace(self, after_id=page.channels[-1].id)


class RecordCheck(Request[Channel]):
    """The parser looked at a channel: the newest message id Telegram shows, when, and
    any error; updates ``last_check_at`` and ``lag_s``."""

    channel_id: int
    newest_id: int = 0
    checked_at: int = 0
    error: str = ""


class Subscribe(Request[Subscribed]):
    """Follow a channel; a repeat updates ``keywords`` and is otherwise a no-op."""

    subscriber: str
    channel_id: int
    keywords: list[str] = []


class Unsubscribe(Request[Unsubscribed]):
    subscriber: str
    channel_id: int


class ListSubscriptions(Request[Subscriptions]):
    """A page of a subscriber's subscriptions, or a channel's subscribers, or all of them,
    in ``(subscriber, channel_id)`` order.

    The page starts after the key ``(after_subscriber, after_channel_id)`` (both unset:
    from the first; with only ``after_channel_id`` set, ``after_subscriber`` is
    ``subscriber``, so a subscriber's pages need only ``after_channel_id``) and holds at
    most ``limit`` subscriptions (1 to ``MAX_PAGE``), fewer once their encoded size
    reaches ``PAGE_BYTES``.
    """

    subscriber: str = ""
    channel_id: int = 0
    after_subscriber: str = ""
    after_channel_id: int = 0
    limit: int = LIST_PAGE

    def following(self, page: Subscriptions) -> ListSubscriptions | None:
        """The request for the page after ``page``; None if it was the last."""
        if not (page.more and page.subscriptions):
            return None
        last = page.subscriptions[-1]
        return replace(self, after_subscriber=last.subscriber, after_channel_id=last.channel_id)


class PutPosts(Request[PostsPut]):
    """Store posts of one channel (idempotent on ``(channel_id, message_id)``).

    A post already stored with the same ``edit_date`` changes nothing; a newer
    ``edit_date`` updates it and gives it a new ``seq``. At most ``MAX_BATCH`` posts.
    """

    channel_id: int
    posts: list[PostData]


class DeletePosts(Request[PostsPut]):
    """Mark posts deleted (kept, with ``deleted`` set and a new ``seq``)."""

    channel_id: int
    message_ids: list[int]


class GetPosts(Request[Posts]):
    """A channel's posts, newest first, older than ``before_id`` when it is set."""

    channel_id: int
    before_id: int = 0
    limit: int = 50


class SearchPosts(Request[Posts]):
    """Full-text search (SQLite FTS5 syntax) over post text, newest first."""

    query: str
    channel_id: int = 0
    limit: int = 50


class PostsSince(Request[Posts]):
    """Posts changed after ``after_seq``, in ``seq`` order, at most ``limit``.

    Only the given channels if ``channel_ids`` is not empty.
    """

    after_seq: int = 0
    limit: int = 100
    channel_ids: list[int] = []


class GetCursor(Request[Cursor]):
    """A consumer's saved position in the post sequence (0 if never saved)."""

    name: str


class SaveCursor(Request[Cursor]):
    """Save a consumer's position; a cursor never moves backwards (the larger one wins)."""

    name: str
    seq: int


class RecordDelivery(Request[DeliveryRecorded]):
    """Record the state of one delivery (idempotent on its key; ``sent``/``skipped`` are
    final). The post must be stored (``NotFound`` otherwise)."""

    delivery: Delivery


class GetDeliveries(Request[Deliveries]):
    """Deliveries matching every filter that is set, in ``(seq, subscriber)`` order, of
    posts whose ``seq`` is above ``after_seq``; at most ``limit``."""

    subscriber: str = ""
    channel_id: int = 0
    message_id: int = 0
    status: str = ""
    after_seq: int = 0
    limit: int = 100


class GetStoreStats(Request[StoreStats]):
    """Counts for status pages, with the stats of at most ``limit`` channels (1 to
    ``MAX_PAGE``) after the channel id ``after_id`` (0: from the first)."""

    after_id: int = 0
    limit: int = LIST_PAGE

    def following(self, page: StoreStats) -> GetStoreStats | None:
        """The request for the next page of ``per_channel``; None if it was the last."""
        if not (page.more and page.per_channel):
            return None
        return replace(self, after_id=page.per_channel[-1].channel_id)


MESSAGES: tuple[type[Message], ...] = (
    ChannelSaved,
    ChannelDeleted,
    Channels,
    Channel,  # also the reply of GetChannel and RecordCheck
    Subscribed,
    Unsubscribed,
    Subscriptions,
    PostsPut,
    Posts,
    Cursor,
    DeliveryRecorded,
    Deliveries,
    StoreStats,
    SaveChannel,
    DeleteChannel,
    GetChannel,
    ListChannels,
    RecordCheck,
    Subscribe,
    Unsubscribe,
    ListSubscriptions,
    PutPosts,
    DeletePosts,
    GetPosts,
    SearchPosts,
    PostsSince,
    GetCursor,
    SaveCursor,
    RecordDelivery,
    GetDeliveries,
    GetStoreStats,
)
