"""A local Telegram server on loopback: MTProto core + in-memory world + control API.

``sandbox = await Sandbox.start()`` runs everything on the current event loop; for
synchronous code (the demo, tests in other processes) ``SandboxThread`` runs it on a
loop of its own. Point an unmodified Telethon client at it with
:func:`sandbox.client.configure`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from runtime.locks import SessionFileLock
from sandbox.control import Control
from sandbox.http import ControlServer
from sandbox.keys import SandboxKey
from sandbox.server import MTProtoServer
from sandbox.world import World

__all__ = ["WORLD_FILE", "Sandbox", "SandboxThread", "ephemeral_key"]

#: The world's file inside a data directory.
WORLD_FILE = "world.json"

T = TypeVar("T")


@functools.cache
def ephemeral_key() -> SandboxKey:
    """The process-wide RSA key of sandboxes started without a data directory or key.

    Made once per process, so every such sandbox in it shares one key.
    """
    return SandboxKey.generate()


class Sandbox:
    """A running sandbox: MTProto server, world and control HTTP server on one loop.

    With a ``data_dir`` the RSA key and the world (auth keys, accounts, channels,
    messages) are kept there, so a new Sandbox on the same directory carries on where
    the last one stopped and clients keep working. The directory is locked while the
    sandbox runs, so two sandboxes never write the same world.
    """

    def __init__(
        self,
        world: World,
        key: SandboxKey,
        server: MTProtoServer,
        http: ControlServer,
        data_dir: Path | None,
        lock: SessionFileLock | None = None,
    ) -> None:
        self._lock = lock
        self.world = world
        self.key = key
        self.server = server
        self.http = http
        self.data_dir = data_dir
        self.control = http.control

    @classmethod
    async def start(
        cls,
        data_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int = 0,
        key: SandboxKey | None = None,
    ) -> Sandbox:
        """Start serving MTProto on ``host:port`` and the control API on ``host:control_port``.

        Port 0 picks a free port. ``key`` overrides the RSA key (by default the data
        directory's, created there on first use, or :func:`ephemeral_key`). Raises OSError
        when an address is taken, runtime.locks.SessionLockedError (naming the holder's pid)
        when another sandbox runs on the data directory, and ValueError when the data
        directory holds an unreadable key or world.
        """
        directory = Path(data_dir) if data_dir is not None else None
        lock = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            lock = SessionFileLock(directory / WORLD_FILE)
            lock.acquire()
        try:
            if key is None:
                if directory is not None:
                    key = await asyncio.to_thread(SandboxKey.load_or_create, directory)
                else:
                    key = await asyncio.to_thread(ephemeral_key)
            world = World(directory / WORLD_FILE if directory is not None else None)
            server = MTProtoServer(world, key, host=host, port=port)
            await server.start()
            world.host, world.port = host, server.port
            http = ControlServer(Control(world), host=host, port=control_port)
            try:
                await http.start()
            except OSError:
                await server.stop()
                raise
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(world, key, server, http, directory, lock)

    @property
    def host(self) -> str:
        """The address the MTProto server listens on."""
        return self.world.host

    @property
    def port(self) -> int:
        """The MTProto port."""
        return self.server.port

    @property
    def public_key_pem(self) -> str:
        """The RSA public key (PKCS#1 PEM) clients pass to ``telethon.crypto.rsa.add_key``."""
        return self.key.public_pem.decode()

    @property
    def public_key_path(self) -> Path | None:
        """Where the public key PEM is kept (None without a data directory)."""
        return self.key.public_key_path

    @property
    def control_url(self) -> str:
        """The base URL of the HTTP control API."""
        return self.http.url

    async def stop(self) -> None:
        """Stop posting streams and both servers, save the world and unlock its directory
        (idempotent)."""
        await self.control.streams.stop_all()
        await self.http.stop()
        await self.server.stop()
        self.world.save()
        if self._lock is not None:
            self._lock.release()

    @staticmethod
    def run_in_thread(
        data_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int = 0,
    ) -> SandboxThread:
        """Start a sandbox on a background thread with its own loop (see SandboxThread)."""
        return SandboxThread(data_dir, host, port, control_port).start()


class SandboxThread:
    """A sandbox on a daemon thread with its own event loop, for synchronous callers.

    ``control`` runs control operations on that loop and waits for them; ``call`` runs
    any function (or coroutine function) there. Use as a context manager or call
    ``stop()``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int = 0,
    ) -> None:
        self._args = (data_dir, host, port, control_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox", daemon=True)
        self._sandbox: Sandbox | None = None
        self.control = _ThreadControl(self)

    def start(self) -> SandboxThread:
        """Start the thread and the sandbox; re-raises whatever made startup fail."""
        self._thread.start()
        try:
            self._sandbox = asyncio.run_coroutine_threadsafe(
                Sandbox.start(*self._args), self._loop
            ).result()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def sandbox(self) -> Sandbox:
        """The running Sandbox (only touch it through ``call``). Raises RuntimeError if stopped."""
        if self._sandbox is None:
            raise RuntimeError("sandbox is not running")
        return self._sandbox

    @property
    def host(self) -> str:
        """The MTProto host."""
        return self.sandbox.host

    @property
    def port(self) -> int:
        """The MTProto port."""
        return self.sandbox.port

    @property
    def public_key_pem(self) -> str:
        """The RSA public key PEM."""
        return self.sandbox.public_key_pem

    @property
    def public_key_path(self) -> Path | None:
        """Where the public key PEM is kept."""
        return self.sandbox.public_key_path

    @property
    def control_url(self) -> str:
        """The base URL of the HTTP control API."""
        return self.sandbox.control_url

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the sandbox's loop and return its result (awaited if a coroutine)."""

        async def run() -> Any:
            result = fn(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        future: Future[Any] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result()

    def stop(self) -> None:
        """Stop the sandbox, its loop and its thread (idempotent)."""
        if self._sandbox is not None:
            asyncio.run_coroutine_threadsafe(self._sandbox.stop(), self._loop).result()
            self._sandbox = None
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(
                self._loop.shutdown_default_executor(), self._loop
            ).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SandboxThread:
        """Start (unless already started); stopped again on leaving the block."""
        return self if self._sandbox is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _ThreadControl:
    """The Control operations of a SandboxThread, each run on the sandbox's loop."""

    def __init__(self, owner: SandboxThread) -> None:
        self._owner = owner

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        if operation not in Control.OPERATIONS:
            raise AttributeError(operation)
        owner = self._owner
        return lambda *args, **kwargs: owner.call(
            getattr(owner.sandbox.control, operation), *args, **kwargs
        )
