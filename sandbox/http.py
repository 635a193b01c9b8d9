"""The control API over loopback HTTP (JSON), and a small synchronous client for it.

``POST /call/<operation>`` with a JSON object of keyword arguments runs one
:class:`sandbox.control.Control` operation and answers ``{"result": ...}``; a Telegram
error answers 400 ``{"error": {"code": ..., "message": ...}}``, bad arguments 400
``{"error": {"code": 400, "message": "BAD_REQUEST: ..."}}``. ``GET /health`` answers
``{"ok": true, "port": <mtproto port>}``.
"""

from __future__ import annotations

import inspect
import json
import urllib.error
import urllib.request
from typing import Any

import msgspec
from aiohttp import web

from sandbox.backend import RpcError
from sandbox.control import Control


class ControlServer:
    """Serves a :class:`Control` on ``http://host:port`` (loopback by default)."""

    def __init__(self, control: Control, host: str = "127.0.0.1", port: int = 0) -> None:
        self.control = control
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve. Raises OSError when the address is taken."""
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_post("/call/{operation}", self._call)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001
        if server is not None and server.sockets:  # the port the OS picked for port=0
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "port": self.control.world.port})

    async def _call(self, request: web.Request) -> web.Response:
        operation = request.match_info["operation"]
        if operation not in Control.OPERATIONS:
            return _error(404, f"UNKNOWN_OPERATION: {operation}")
        try:
            kwargs = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError as exc:
            return _error(400, f"BAD_REQUEST: {exc}")
        if not isinstance(kwargs, dict):
            return _error(400, "BAD_REQUEST: body must be a JSON object")
        try:
            result = getattr(self.control, operation)(**kwargs)
            if inspect.isawaitable(result):  # operations that wait, e.g. press
                result = await result
        except RpcError as exc:
            return _error(exc.code, exc.message)
        except (TypeError, ValueError) as exc:
            return _error(400, f"BAD_REQUEST: {exc}")
        body = msgspec.json.encode({"result": result})
        return web.Response(body=body, content_type="application/json")


def _error(code: int, message: str) -> web.Response:
    status = 404 if code == 404 else 400
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class ControlClient:
    """Synchronous client of :class:`ControlServer`, usable from any process or thread.

    ``client.call("post", channel="news", text="hi")`` or ``client.post(channel=..., ...)``;
    results come back as JSON data (dicts, lists, ints, strings). A Telegram error raises
    :class:`~sandbox.backend.RpcError`; a transport failure raises OSError.
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def call(self, operation: str, **kwargs: Any) -> Any:
        """Run one control operation and return its result."""
        request = urllib.request.Request(
            f"{self.url}/call/{operation}",
            data=json.dumps(kwargs).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())["result"]
        except urllib.error.HTTPError as exc:
            error = json.loads(exc.read() or b"{}").get("error", {})
            raise RpcError(error.get("code", exc.code), error.get("message", str(exc))) from None

    def health(self) -> dict[str, Any]:
        """``{"ok": True, "port": ...}`` when the sandbox is up; OSError when it is not."""
        with urllib.request.urlopen(f"{self.url}/health", timeout=self.timeout) as response:
            return json.loads(response.read())

    def __getattr__(self, operation: str) -> Any:
        if operation not in Control.OPERATIONS:
            raise AttributeError(operation)
        return lambda **kwargs: self.call(operation, **kwargs)
