"""A TCP forwarder in front of the moto S3 server that a fault can cut.

moto keeps its buckets in memory, so stopping the server would lose the lake the soak is
checking. The pipeline's processes talk to this proxy instead; `cut()` resets every open
connection and stops listening (the endpoint refuses connections, as a dead endpoint does),
`restore()` listens again on the same port. The soak's own checks bypass the proxy.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from devstack.processes import free_port

BUFFER = 64 * 1024


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target = (host, target_port)
        self.port = free_port(host)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """The endpoint goes down: open connections reset, new ones refused."""
        listener, self._listener = self._listener, None
        if listener is not None:
            _shut(listener)  # wakes the accept() blocked in the other thread
            listener.close()
        with self._lock:
            for sock in self._open:
                _shut(sock)

    def restore(self) -> None:
        if self._listener is None:
            self.start()

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut or closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            pair = _Pair(client, upstream, self._forget)
            threading.Thread(target=pair.pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pair.pump, args=(upstream, client), daemon=True).start()

    def _forget(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(sockets)


class _Pair:
    """Both directions of one proxied connection; the sockets close when both pumps end."""

    def __init__(
        self, client: socket.socket, upstream: socket.socket, forget: Callable[..., None]
    ) -> None:
        self.sockets = (client, upstream)
        self.forget = forget
        self.running = 2
        self.lock = threading.Lock()

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(BUFFER):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in self.sockets:
                _shut(sock)
            with self.lock:
                self.running -= 1
                last = self.running == 0
            if last:
                self.forget(*self.sockets)
                for sock in self.sockets:
                    sock.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
