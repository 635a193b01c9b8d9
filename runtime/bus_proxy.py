"""The event bus at the broker: an XSUB/XPUB proxy on a thread of its own.

Publishers connect to ``events_in`` (the XSUB), subscribers to ``events_out`` (the XPUB);
subscriptions flow upstream, events downstream, with CURVE on both sides when the broker
has a secret key. The bus is at most once: nothing is stored or re-sent here.
"""

from __future__ import annotations

import threading

import zmq

from runtime import curve, ipc


class BusProxy:
    """Binds the bus's two sockets and forwards between them until :meth:`stop`."""

    def __init__(self, context: zmq.Context) -> None:
        self._zmq = context
        self._control_endpoint = f"inproc://switchboard-broker-proxy-{id(self):x}"
        self._control: zmq.Socket | None = None
        self._thread: threading.Thread | None = None

    def start(self, events_in: list[str], events_out: list[str], secret: str | None) -> None:
        """Bind every endpoint and start forwarding; raises if one cannot be bound."""
        xsub = self._zmq.socket(zmq.XSUB)
        xpub = self._zmq.socket(zmq.XPUB)
        curve.serve(xsub, secret)
        curve.serve(xpub, secret)
        for endpoint in events_in:
            ipc.bind(xsub, endpoint)
        for endpoint in events_out:
            ipc.bind(xpub, endpoint)
        self._control = self._zmq.socket(zmq.PAIR)
        self._control.bind(self._control_endpoint)
        self._thread = threading.Thread(
            target=_run_proxy,
            args=(self._zmq, xsub, xpub, self._control_endpoint),
            name="broker-events",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop forwarding and close the bus's sockets (waits up to 5 s for the thread)."""
        assert self._control is not None
        self._control.send(b"TERMINATE")
        if self._thread is not None:
            self._thread.join(5)
        self._control.close(linger=0)


def _run_proxy(context: zmq.Context, xsub: zmq.Socket, xpub: zmq.Socket, control: str) -> None:
    """The event bus: XSUB in, XPUB out, until TERMINATE arrives on ``control``."""
    ctl = context.socket(zmq.PAIR)
    ctl.connect(control)
    try:
        zmq.proxy_steerable(xsub, xpub, None, ctl)
    except zmq.ContextTerminated:
        pass
    finally:
        xsub.close(linger=0)
        xpub.close(linger=0)
        ctl.close(linger=0)
