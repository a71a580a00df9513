"""A tiny TCP proxy on 127.0.0.1 that can stop forwarding, or cut a connection after COMMIT.

Threads and blocking sockets only. Every loop is bounded: pumps poll with a short timeout
and stop when the proxy closes, so a failing test never leaves a thread running.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

_POLL_S = 0.05
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    cutting: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            with contextlib.suppress(OSError):
                sock.close()


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream``; ``hang()`` turns it into a silent peer.

    While hanging, the proxy neither reads nor forwards anything, on existing and new
    connections. The client's kernel still gets ACKs from the proxy's kernel, as from a
    server whose process froze; a client that sends more than the buffers hold meets a
    zero window, as on a dead link. ``cut_after(marker)`` forwards the client data holding
    ``marker`` to the server, withholds the server's answer, and resets the connection
    ``delay`` seconds later: the server acted on the request, the client never hears how.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = threading.Event()
        self._cut_marker: bytes | None = None
        self._cut_delay = 0.0
        self.cuts = 0
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self._threads[0].start()

    def hang(self) -> None:
        """Stop forwarding in both directions; the connections stay open."""
        self._forwarding.clear()

    def resume(self) -> None:
        """Forward again; connections that hung are reset (their streams are out of step)."""
        self._close_links()
        self._forwarding.set()

    def cut_after(self, marker: bytes, *, delay: float = 0.3) -> None:
        """Cut the next connection whose client sends ``marker`` (see the class docstring)."""
        self._cut_delay = delay
        self._cut_marker = marker

    def close(self) -> None:
        self._closed.set()
        self._forwarding.set()
        self._close_links()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            link = _Link(client, server)
            with self._lock:
                self._links.append(link)
            for upward in (True, False):
                thread = threading.Thread(target=self._pump, args=(link, upward), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, link: _Link, upward: bool) -> None:
        source, target = (link.client, link.server) if upward else (link.server, link.client)
        with contextlib.suppress(OSError, ValueError):
            while not (self._closed.is_set() or link.cutting.is_set()):
                if not self._forwarding.wait(_POLL_S):
                    continue  # hanging: the bytes stay unread in the kernel's buffers
                if not select.select([source], [], [], _POLL_S)[0]:
                    continue
                if not self._forwarding.is_set() or link.cutting.is_set():
                    continue
                data = source.recv(65536)
                if not data:  # end of stream: pass it on
                    target.shutdown(socket.SHUT_WR)
                    return
                marker = self._cut_marker
                if upward and marker is not None and marker in data:
                    self._cut(link, data)
                    return
                target.sendall(data)

    def _cut(self, link: _Link, data: bytes) -> None:
        self._cut_marker = None
        link.cutting.set()  # the other pump stops forwarding the server's answer
        link.server.sendall(data)
        time.sleep(self._cut_delay)  # the server acts on the request meanwhile
        self.cuts += 1
        link.close()

    def _close_links(self) -> None:
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()


@contextlib.contextmanager
def tcp_proxy(upstream: tuple[str, int]) -> Iterator[TcpProxy]:
    """A running :class:`TcpProxy`, closed at the end of the block."""
    proxy = TcpProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
