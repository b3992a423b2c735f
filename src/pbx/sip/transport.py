"""asyncio shell for SIP transports: UDP, TCP and TLS over IPv4 and IPv6.

Bytes in become parsed messages handed to one callback with the ``Peer`` they came from; bytes
out go to a ``Peer``. Stream connections are framed by ``StreamParser``, answer CRLF keep-alive
pings, and are closed when idle or when a peer leaves a message half-sent. Nothing in here knows
SIP semantics beyond framing; the endpoint decides what to answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from pbx.errors import ParseError
from pbx.sip.message import KeepAlive, Request, Response, StreamParser, parse_message
from pbx.sip.peer import Peer

__all__ = ["TransportLayer", "TransportLimits"]

log = logging.getLogger("pbx.sip.transport")

MessageHandler = Callable[[Request | Response, Peer], None]
ErrorHandler = Callable[[ParseError, bytes, Peer], None]


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Bounds on what a peer can make us hold."""

    max_message_size: int = 65535
    idle_timeout: float = 300.0       # close a stream with no traffic for this long
    partial_timeout: float = 30.0     # close a stream whose peer left a message half-sent
    max_connections: int = 10000
    connect_timeout: float = 5.0


def _host_key(host: str) -> str:
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, layer: TransportLayer) -> None:
        self.layer = layer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        peer = Peer("udp", str(addr[0]), int(addr[1]))
        if len(data) <= 4 and not data.strip(b"\r\n\x00"):
            return  # keep-alive datagram
        layer = self.layer
        if layer.admit is not None and not layer.admit(peer):
            return  # over its rate: dropped before any parsing
        try:
            msg = parse_message(data, max_size=layer.limits.max_message_size)
        except ParseError as exc:
            layer.on_error(exc, data, peer)
            return
        layer.on_message(msg, peer)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection, inbound or outbound."""

    def __init__(self, layer: TransportLayer, transport_name: str) -> None:
        self.layer = layer
        self.name = transport_name
        self.parser = StreamParser(layer.limits.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.last_activity = time.monotonic()
        self.partial_since: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        addr = transport.get_extra_info("peername")
        self.peer = Peer(self.name, _host_key(str(addr[0])), int(addr[1]))
        if not self.layer._register(self):
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.last_activity = now
        peer = self.peer
        assert peer is not None and self.transport is not None
        try:
            items = self.parser.feed(data)
        except ParseError as exc:
            log.info("closing %s: %s", peer, exc.reason)
            self.layer.on_error(exc, b"", peer)
            self.transport.close()
            return
        for item in items:
            if isinstance(item, KeepAlive):
                self.transport.write(b"\r\n")
            elif self.layer.admit is not None and not self.layer.admit(peer):
                continue
            elif isinstance(item, ParseError):
                self.layer.on_error(item, item.data or b"", peer)
            else:
                self.layer.on_message(item, peer)
        self.partial_since = (self.partial_since or now) if self.parser.pending else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.layer._unregister(self)


class TransportLayer:
    """Owns every SIP socket; ``send`` routes bytes to a peer over the right transport."""

    def __init__(self, on_message: MessageHandler, on_error: ErrorHandler,
                 limits: TransportLimits | None = None,
                 ssl_server: ssl.SSLContext | None = None,
                 ssl_client: ssl.SSLContext | None = None) -> None:
        self.on_message = on_message
        self.on_error = on_error
        # Called before a message from ``peer`` is parsed or handled; False drops it.
        self.admit: Callable[[Peer], bool] | None = None
        self.limits = limits or TransportLimits()
        self._ssl_server = ssl_server
        self._ssl_client = ssl_client
        self._udp: dict[int, list[tuple[_Udp, str, int]]] = {}    # family -> endpoints
        self._listen: dict[str, list[tuple[str, int]]] = {}        # transport -> addresses
        self._servers: list[asyncio.Server] = []
        self._streams: dict[Peer, _Stream] = {}
        self._connecting: dict[Peer, asyncio.Task[_Stream | None]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # Listening ----------------------------------------------------------------------------
    async def listen(self, transport: str, host: str, port: int) -> tuple[str, int]:
        """Start a listener; returns the bound (host, port) (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if transport == "udp":
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
                except OSError:
                    pass
            sock.bind((host, port))
            _, proto = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=sock)
            bound = sock.getsockname()
            self._udp.setdefault(family, []).append((proto, host, int(bound[1])))
        elif transport in ("tcp", "tls"):
            if transport == "tls" and self._ssl_server is None:
                raise ValueError("a tls listener needs a certificate and key")
            server = await loop.create_server(
                lambda: _Stream(self, transport), host, port, family=family,
                ssl=self._ssl_server if transport == "tls" else None, reuse_address=True,
                backlog=1024)
            self._servers.append(server)
            bound = server.sockets[0].getsockname()
        else:
            raise ValueError(f"unknown transport {transport!r}")
        addr = (host, int(bound[1]))
        self._listen.setdefault(transport, []).append(addr)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())
        return addr

    def local_address(self, transport: str, family_of: str | None = None) -> tuple[str, int] | None:
        """A listening (host, port) for ``transport``, of the same IP family as ``family_of``."""
        addrs = self._listen.get(transport) or []
        want_v6 = family_of is not None and ":" in family_of
        for host, port in addrs:
            if (":" in host) == want_v6:
                return host, port
        return addrs[0] if addrs else None

    @property
    def transports(self) -> set[str]:
        return set(self._listen)

    # Sending ------------------------------------------------------------------------------
    def send(self, data: bytes, peer: Peer) -> None:
        """Send bytes to ``peer``; streams are reused or opened in the background."""
        if peer.transport == "udp":
            family = socket.AF_INET6 if ":" in peer.host else socket.AF_INET
            endpoints = self._udp.get(family)
            if not endpoints:
                log.info("no udp listener for %s", peer)
                return
            proto = endpoints[0][0]
            if proto.transport is not None:
                proto.transport.sendto(data, (peer.host, peer.port))
            return
        key = Peer(peer.transport, _host_key(peer.host), peer.port)
        stream = self._streams.get(key)
        if stream is not None and stream.transport is not None:
            stream.transport.write(data)
            stream.last_activity = time.monotonic()
            return
        self._connect_and_send(key, data)

    def _connect_and_send(self, peer: Peer, data: bytes) -> None:
        pending = self._connecting.get(peer)
        if pending is None:
            pending = asyncio.create_task(self._connect(peer))
            self._connecting[peer] = pending

        def write(task: asyncio.Task[_Stream | None]) -> None:
            stream = None if task.cancelled() or task.exception() else task.result()
            if stream is not None and stream.transport is not None:
                stream.transport.write(data)
            else:
                log.info("cannot reach %s", peer)
                self.on_unreachable(peer)

        pending.add_done_callback(write)

    def on_unreachable(self, peer: Peer) -> None:
        """Hook: a stream to ``peer`` could not be opened (the endpoint reports it)."""

    async def _connect(self, peer: Peer) -> _Stream | None:
        loop = asyncio.get_running_loop()
        try:
            ctx = self._ssl_client if peer.transport == "tls" else None
            if peer.transport == "tls" and ctx is None:
                ctx = ssl.create_default_context()
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Stream(self, peer.transport), peer.host, peer.port,
                                       ssl=ctx),
                self.limits.connect_timeout)
            assert isinstance(proto, _Stream)
            return proto
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            log.info("connect to %s failed: %s", peer, exc)
            return None
        finally:
            self._connecting.pop(peer, None)

    # Connection bookkeeping -------------------------------------------------------------------
    def _register(self, stream: _Stream) -> bool:
        assert stream.peer is not None
        if len(self._streams) >= self.limits.max_connections:
            log.warning("connection limit reached, refusing %s", stream.peer)
            return False
        self._streams[stream.peer] = stream
        return True

    def _unregister(self, stream: _Stream) -> None:
        if stream.peer is not None and self._streams.get(stream.peer) is stream:
            del self._streams[stream.peer]

    def has_stream(self, peer: Peer) -> bool:
        return Peer(peer.transport, _host_key(peer.host), peer.port) in self._streams

    async def _sweep(self) -> None:
        limits = self.limits
        while True:
            await asyncio.sleep(min(5.0, limits.partial_timeout / 2, limits.idle_timeout / 2))
            now = time.monotonic()
            for stream in list(self._streams.values()):
                if stream.transport is None:
                    continue
                if now - stream.last_activity > limits.idle_timeout:
                    log.info("closing idle %s", stream.peer)
                    stream.transport.close()
                elif (stream.partial_since is not None
                      and now - stream.partial_since > limits.partial_timeout):
                    log.info("closing %s: message left half-sent", stream.peer)
                    stream.transport.abort()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self._servers:
            server.close()
        for stream in list(self._streams.values()):
            if stream.transport is not None:
                stream.transport.abort()
        for endpoints in self._udp.values():
            for proto, _, _ in endpoints:
                if proto.transport is not None:
                    proto.transport.close()
        for server in self._servers:
            await server.wait_closed()
