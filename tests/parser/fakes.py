"""Small stand-ins for the parser's neighbours in in-process tests: Telegram as the
session actors answer it, and a store kept in dicts. They answer the real protocol
messages through :class:`runtime.testing.ActorHarness`'s answer table."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

import msgspec

from protocols import errors
from protocols import session as s
from protocols import store as st
from protocols.base import Message
from protocols.session import ChatMessage


@dataclass
class FakeChannel:
    id: int
    username: str
    messages: list[ChatMessage] = field(default_factory=list)
    broadcast: bool = True

    def post(self, text: str, date: int = 1_700_000_000) -> ChatMessage:
        msg = ChatMessage(id=len(self.messages) + 1, chat_id=self.id, date=date, text=text)
        self.messages.append(msg)
        return msg

    @property
    def peer(self) -> s.Peer:
        return s.Peer(id=self.id, kind="channel", username=self.username, broadcast=self.broadcast)


class FakeTelegram:
    """Channels, and per reader: its memberships, a member cap and forced errors."""

    def __init__(self, readers: list[str], cap: int = 500) -> None:
        self.lock = threading.Lock()
        self.channels: dict[int, FakeChannel] = {}
        self.members: dict[str, set[int]] = {r: set() for r in readers}
        self.cap = cap
        self.fail: dict[tuple[str, type[Message]], errors.Error] = {}
        self.calls: list[tuple[str, Message]] = []
        self._ids = itertools.count(1)

    def channel(self, username: str, posts: int = 0) -> FakeChannel:
        channel = FakeChannel(id=-1_000_000_000_000 - next(self._ids), username=username)
        for i in range(posts):
            channel.post(f"post {i + 1}")
        self.channels[channel.id] = channel
        return channel

    def _find(self, ref: Any) -> FakeChannel | None:
        for channel in self.channels.values():
            if ref in (channel.id, channel.username, f"@{channel.username}"):
                return channel
        return None

    def answers(self) -> dict[Any, Any]:
        table: dict[Any, Any] = {}
        for reader in self.members:
            address = f"session:{reader}"
            for kind in (s.ResolvePeer, s.JoinChannel, s.LeaveChannel, s.FetchHistory):
                table[(address, kind)] = _bind(self._answer, reader)
            table[(address, s.GetSessionStatus)] = s.SessionStatus(
                account=reader, state="authorized", authorized=True
            )
        return table

    def _answer(self, reader: str, body: Message) -> Message:
        with self.lock:
            self.calls.append((reader, body))
            forced = self.fail.get((reader, type(body)))
            if forced is not None:
                return forced
            channel = self._find(getattr(body, "peer", None))
            if channel is None:
                return errors.NotFound(message="USERNAME_NOT_OCCUPIED: no such channel")
            if isinstance(body, s.ResolvePeer):
                return channel.peer
            if isinstance(body, s.JoinChannel):
                joined = self.members[reader]
                if channel.id not in joined and len(joined) >= self.cap:
                    return errors.BadRequest(message="CHANNELS_TOO_MUCH: too many channels")
                joined.add(channel.id)
                return s.Joined(peer=channel.peer)
            if isinstance(body, s.LeaveChannel):
                self.members[reader].discard(channel.id)
                return s.Left(peer=channel.peer)
            assert isinstance(body, s.FetchHistory)
            if channel.id not in self.members[reader]:
                return errors.Unauthorized(message="CHANNEL_PRIVATE: not a member")
            newer = [
                m
                for m in reversed(channel.messages)
                if m.id > body.min_id and (not body.offset_id or m.id < body.offset_id)
            ]
            return s.History(peer=channel.peer, messages=newer[: body.limit])

    def count(self, reader: str, kind: type[Message]) -> int:
        with self.lock:
            return sum(1 for r, body in self.calls if r == reader and isinstance(body, kind))


class FakeStore:
    """The store's contract in dicts: idempotent puts, one sequence for every change."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.channels: dict[int, st.Channel] = {}
        self.posts: dict[tuple[int, int], st.Post] = {}
        self.seq = 0

    def answers(self) -> dict[Any, Any]:
        kinds = (
            st.SaveChannel,
            st.DeleteChannel,
            st.ListChannels,
            st.PutPosts,
            st.DeletePosts,
            st.RecordCheck,
        )
        return {("store:main", kind): self._answer for kind in kinds}

    def _answer(self, body: Message) -> Message:
        with self.lock:
            if isinstance(body, st.SaveChannel):
                created = body.channel.id not in self.channels
                self.channels[body.channel.id] = body.channel
                return st.ChannelSaved(channel=body.channel, created=created)
            if isinstance(body, st.DeleteChannel):
                channel = self.channels[body.channel_id]
                self.channels[body.channel_id] = msgspec.structs.replace(channel, state="removed")
                return st.ChannelDeleted(channel_id=body.channel_id)
            if isinstance(body, st.ListChannels):
                return st.Channels(channels=list(self.channels.values()))
            if isinstance(body, st.RecordCheck):
                return self.channels[body.channel_id]
            if isinstance(body, st.DeletePosts):
                gone: list[st.Post] = []
                for mid in body.message_ids:
                    post = self.posts.get((body.channel_id, mid))
                    if post is not None and not post.deleted:
                        self.seq += 1
                        gone.append(msgspec.structs.replace(post, deleted=True, seq=self.seq))
                        self.posts[(body.channel_id, mid)] = gone[-1]
                return st.PostsPut(updated=len(gone), last_seq=self.seq, edited=gone)
            assert isinstance(body, st.PutPosts)
            if body.channel_id not in self.channels:
                return errors.NotFound(message=f"channel {body.channel_id} is not kept")
            stored: list[st.Post] = []
            edited: list[st.Post] = []
            for data in body.posts:
                key = (body.channel_id, data.message_id)
                old = self.posts.get(key)
                if old is not None and data.edit_date <= old.edit_date:
                    continue
                self.seq += 1
                post = st.Post(
                    seq=self.seq, channel_id=body.channel_id, **msgspec.structs.asdict(data)
                )
                self.posts[key] = post
                (stored if old is None else edited).append(post)
            last = max((m for c, m in self.posts if c == body.channel_id), default=0)
            channel = self.channels[body.channel_id]
            self.channels[body.channel_id] = msgspec.structs.replace(channel, last_message_id=last)
            return st.PostsPut(
                inserted=len(stored),
                updated=len(edited),
                last_seq=self.seq,
                last_message_id=last,
                stored=stored,
                edited=edited,
            )

    def stored(self, channel_id: int) -> list[int]:
        with self.lock:
            return sorted(m for c, m in self.posts if c == channel_id)


def _bind(fn: Any, reader: str) -> Any:
    return lambda body: fn(reader, body)
