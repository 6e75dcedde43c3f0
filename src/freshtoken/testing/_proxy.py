"""A small TCP forwarder that tests and drills put between two loopback peers to
inject faults: cut the link (outage), bring it back, or drop responses on the
way back (a "lost response": the server did the work, the client never hears).

::

    with FaultProxy("127.0.0.1", 5432) as proxy:   # e.g. in front of PostgreSQL
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/db"
        ...
        proxy.cut()        # every open connection is reset, new ones are refused
        proxy.restore()    # connections are forwarded again
        proxy.drop_responses(1, match=b"POST /oauth/token")

Threads, blocking sockets, no dependencies. Every thread ends when the proxy
stops; ``stop()`` joins them with a bounded timeout.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections import Counter
from types import TracebackType

_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): the peer sees 'connection reset' at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.drop_next_response = False
        self.closed = False
        self.lock = threading.Lock()

    def close(self, *, reset: bool) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.close()


class FaultProxy:
    """Forward ``listen_host:port`` (ephemeral by default) to ``upstream``.

    ``stats`` counts ``connections``, ``refused`` (while cut), ``reset`` (links cut),
    ``dropped`` (responses dropped) and ``bytes_up`` / ``bytes_down``.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.connect_timeout = connect_timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, listen_port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._cut = False
        self._drops: list[tuple[int, bytes | None]] = []  # [remaining, match]
        self.stats: Counter[str] = Counter()

    # --- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FaultProxy:
        self._listener.listen(128)
        self._spawn(self._accept_loop, "fault-proxy-accept")
        return self

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            links = list(self._links)
            self._links.clear()
        for link in links:
            link.close(reset=True)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- faults -----------------------------------------------------------------------

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Reset every open connection and refuse (reset) new ones until :meth:`restore`."""
        with self._lock:
            self._cut = True
            links = list(self._links)
            self._links.clear()
        for link in links:
            link.close(reset=True)
            self._count("reset", 1)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def drop_responses(self, count: int = 1, *, match: bytes | None = None) -> None:
        """Drop the next ``count`` responses to requests whose bytes contain ``match``
        (any request if ``None``): the request reaches the upstream, which answers;
        the answer is thrown away and the client's connection is reset."""
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._drops.append((count, match))

    @property
    def pending_drops(self) -> int:
        with self._lock:
            return sum(n for n, _ in self._drops)

    # --- machinery --------------------------------------------------------------------

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.1)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut:
                self._count("refused", 1)
                _reset(client)
                continue
            self._spawn(self._open_link, "fault-proxy-link", client)

    def _open_link(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=self.connect_timeout)
        except OSError:
            self._count("upstream_failed", 1)
            _reset(client)
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client, upstream)
        with self._lock:
            if self._cut or self._stopping.is_set():
                link.close(reset=True)
                return
            self._links.add(link)
        self._count("connections", 1)
        self._spawn(self._pump_down, "fault-proxy-down", link)
        self._pump_up(link)

    def _count(self, key: str, n: int) -> None:
        with self._lock:
            self.stats[key] += n

    def _forget(self, link: _Link, *, reset: bool) -> None:
        with self._lock:
            self._links.discard(link)
        link.close(reset=reset)

    def _claim_drop(self, data: bytes) -> bool:
        with self._lock:
            for i, (remaining, match) in enumerate(self._drops):
                if match is None or match in data:
                    if remaining <= 1:
                        del self._drops[i]
                    else:
                        self._drops[i] = (remaining - 1, match)
                    return True
        return False

    def _pump_up(self, link: _Link) -> None:
        """client → upstream."""
        while True:
            try:
                data = link.client.recv(_CHUNK)
            except OSError:
                data = b""
            if not data:
                self._forget(link, reset=False)
                return
            if self._drops and self._claim_drop(data):
                link.drop_next_response = True
            try:
                link.upstream.sendall(data)
            except OSError:
                self._forget(link, reset=True)
                return
            self._count("bytes_up", len(data))

    def _pump_down(self, link: _Link) -> None:
        """upstream → client."""
        while True:
            try:
                data = link.upstream.recv(_CHUNK)
            except OSError:
                data = b""
            if not data:
                self._forget(link, reset=False)
                return
            if link.drop_next_response:
                self._count("dropped", 1)
                self._forget(link, reset=True)
                return
            try:
                link.client.sendall(data)
            except OSError:
                self._forget(link, reset=True)
                return
            self._count("bytes_down", len(data))
