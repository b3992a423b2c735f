"""The reference SIP server: registrar with digest auth and a stateful forking proxy.

This is the asyncio shell around the pure cores: it feeds bytes from ``TransportLayer`` into the
``TransactionLayer``, drains the events, sends what they say, and re-arms one timer. Routing
decisions come from ``pbx.sip.proxy``, registrations from ``pbx.sip.registrar``, credentials from
``pbx.sip.auth``. Bindings live in memory and are written behind to the location store.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import ipaddress
import logging
import math
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pbx.config import Config
from pbx.errors import ParseError
from pbx.sip import auth
from pbx.sip.address import parse_address
from pbx.sip.badrequest import error_reply
from pbx.sip.dialog import create_cancel
from pbx.sip.endpoint import Endpoint
from pbx.sip.location import Binding, LocationStore
from pbx.sip.message import Request, Response
from pbx.sip.peer import Peer
from pbx.sip.proxy import Branch, ResponseContext, check_request, forward_request
from pbx.sip.ratelimit import RateLimiter
from pbx.sip.registrar import RegistrarPolicy, handle_register, lookup_targets
from pbx.sip.transaction import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    Send,
    StrayResponse,
    Timers,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
    TxKey,
)
from pbx.sip.transport import TransportLayer, TransportLimits
from pbx.sip.uri import SipUri, Uri, format_host, parse_host, parse_uri
from pbx.store import MemoryUserStore, SqliteLocationStore

__all__ = ["SipServer", "serve"]

log = logging.getLogger("pbx.server")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, REFER, NOTIFY, MESSAGE, SUBSCRIBE"
_LOCAL_NAMES = {"localhost"}


@dataclass(slots=True)
class _Proxied:
    """State of one proxied request: its server transaction and its branches."""

    server_key: TxKey
    request: Request
    source: Peer
    context: ResponseContext
    timer_c: asyncio.TimerHandle | None = None
    branches: dict[TxKey, Branch] = field(default_factory=dict)


class SipServer:
    """Registrar + proxy bound to the listeners of a ``Config``."""

    def __init__(self, config: Config, location: LocationStore | None = None) -> None:
        self.config = config
        sip = config.sip
        self.location: LocationStore = location or SqliteLocationStore(config.store_path)
        self.users = MemoryUserStore(config.users)
        self.transport = TransportLayer(self._on_message, self._on_parse_error,
                                        TransportLimits(max_message_size=sip.max_message_size),
                                        ssl_server=self._ssl_context())
        self.transport.on_unreachable = self._on_unreachable  # type: ignore[method-assign]
        self.layer = TransactionLayer(Timers(t1=sip.t1, t2=sip.t2, t4=sip.t4))
        self._trusted_nets = [ipaddress.ip_network(n) for n in sip.trusted]
        self._trusted_cache: dict[str, bool] = {}
        self.limiter = RateLimiter(sip.rate_limit) if sip.rate_limit > 0 else None
        if self.limiter is not None:
            self.transport.admit = self._admit
        secret = os.urandom(32)
        self.digest = auth.DigestServer(sip.realm, secret, sip.nonce_ttl,
                                        algorithms=sip.auth_algorithms)
        self.policy = RegistrarPolicy(min_expires=sip.min_expires, max_expires=sip.max_expires,
                                      default_expires=sip.default_expires,
                                      max_contacts=sip.max_contacts)
        self.bindings: dict[str, list[Binding]] = {}
        self._dirty: set[str] = set()
        self._flush_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        # Overload: while the event loop runs this late, new calls get 503 + Retry-After
        # instead of queueing up (a server that answers everything late serves nobody).
        self.overloaded = False
        self.lag = 0.0
        # The B2BUA side (set by pbx.Pbx): sessions the PBX takes part in, and who decides
        # which new INVITEs it takes (True: taken, answered by the callee).
        self.endpoint: Endpoint | None = None
        self.take_call: Callable[[TxKey, Request, Peer], bool] | None = None
        # Told of every accepted REGISTER that changed bindings: (aor, bindings now, source).
        self.on_registration: Callable[[str, list[Binding], Peer], None] | None = None
        self._proxied: dict[TxKey, _Proxied] = {}         # server tx key -> state
        self._branch_owner: dict[TxKey, _Proxied] = {}    # client tx key -> state
        self._branch_peer: dict[TxKey, Peer] = {}          # client tx key -> next hop
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._own_hosts: set[str] = {sip.domain.lower(), *_LOCAL_NAMES}
        self._own_sent_by: set[tuple[str, int]] = set()
        self._own_ports: set[int] = set()
        self._domain_host = parse_host(sip.domain)
        self._aors: dict[str, str] = {}
        self._dns: dict[str, tuple[float, str | None]] = {}   # name -> (valid until, address)
        self._unresolved: set[str] = set()
        self._counter = 0
        self._pool = b""
        self._pool_at = 0
        self.stats: dict[str, int] = {"parse_errors": 0, "requests": 0, "responses": 0}

    def _ssl_context(self) -> ssl.SSLContext | None:
        sip = self.config.sip
        if sip.tls_cert is None or sip.tls_key is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(sip.tls_cert), str(sip.tls_key))
        return ctx

    # Life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        now = time.time()
        for aor in await self.location.all_aors():
            live = [b for b in await self.location.load(aor) if b.expires_at > now]
            if live:
                self.bindings[aor] = live
        for spec in self.config.sip.listen:
            host, port = await self.transport.listen(spec.transport, spec.host, spec.port)
            bare = host.strip("[]")
            self._own_hosts.add(bare.lower())
            self._own_hosts.add(format_host(bare).lower())
            self._own_sent_by.add((bare, port))
            self._own_ports.add(port)
            log.info("listening on %s:%s:%d", spec.transport, format_host(bare), port)
        self._flush_task = asyncio.create_task(self._flush_loop())
        self._lag_task = asyncio.create_task(self._watch_lag())

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._flush_task is not None:
            self._flush_task.cancel()
        if self._lag_task is not None:
            self._lag_task.cancel()
        await self._flush()
        await self.transport.close()
        await self.location.close()

    # Persistence of bindings (write-behind) --------------------------------------------------
    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            try:
                await self._flush()
            except Exception:  # a store failure must not stop the server
                log.exception("location store flush failed")

    _LAG_PERIOD = 0.05     # how often the loop's lateness is sampled
    _LAG_LIMIT = 0.25      # seconds late that count as overload ...
    _LAG_SAMPLES = 3       # ... in this many samples in a row (one GC pause is not overload)
    _LAG_HOLD = 1.0        # overload lasts this long after the last late sample

    async def _watch_lag(self) -> None:
        assert self._loop is not None
        loop = self._loop
        until = 0.0
        late = 0
        while True:
            start = loop.time()
            await asyncio.sleep(self._LAG_PERIOD)
            now = loop.time()
            self.lag = now - start - self._LAG_PERIOD
            late = late + 1 if self.lag > self._LAG_LIMIT else 0
            if late >= self._LAG_SAMPLES:
                if not self.overloaded:
                    log.warning("overloaded (event loop %.0f ms late %d times in a row): "
                                "refusing new calls with 503", self.lag * 1000, late)
                until = now + self._LAG_HOLD
            self.overloaded = now < until

    async def _flush(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        await self.location.save_many({aor: list(self.bindings.get(aor, [])) for aor in dirty})

    # Event plumbing ---------------------------------------------------------------------------
    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _on_message(self, msg: Request | Response, peer: Peer) -> None:
        now = self._now()
        try:
            if isinstance(msg, Request):
                self.stats["requests"] += 1
                events = self.layer.receive_request(msg, peer, now)
            else:
                self.stats["responses"] += 1
                events = self.layer.receive_response(msg, peer, now)
            self._run(events)
        except ParseError as exc:
            self.stats["parse_errors"] += 1
            log.info("bad message from %s: %s", peer, exc.reason)
            if isinstance(msg, Request) and msg.method != "ACK":
                self._on_parse_error(exc, bytes(msg), peer)
        except Exception:
            log.exception("error handling message from %s", peer)
            if isinstance(msg, Request) and msg.method != "ACK":
                self._on_parse_error(ParseError("internal error", 500), bytes(msg), peer)

    def _on_parse_error(self, exc: ParseError, data: bytes, peer: Peer) -> None:
        self.stats["parse_errors"] += 1
        reply = error_reply(data, exc, self.config.sip.server_header) if data else None
        if reply is not None:
            self.transport.send(reply, peer)

    def _on_unreachable(self, peer: Peer) -> None:
        if self.endpoint is not None:
            self.endpoint.on_unreachable(peer)
        now = self._now()
        events: list[object] = []
        for key, hop in list(self._branch_peer.items()):
            if hop == peer:
                events.extend(self.layer.transport_error(key, now))
        self._run(events)

    def _run(self, events: Sequence[object]) -> None:
        endpoint = self.endpoint
        for ev in events:
            if isinstance(ev, Send):
                self.transport.send(bytes(ev.message), ev.peer)
            elif isinstance(ev, RequestReceived):
                self._on_request(ev.key, ev.request, ev.source)
            elif endpoint is not None and (endpoint.on_ack(ev) if isinstance(ev, AckReceived)
                                           else endpoint.on_event(ev)):
                continue
            elif isinstance(ev, ResponseReceived):
                self._on_branch_response(ev.key, ev.response)
            elif isinstance(ev, AckReceived):
                self._forward_stateless(ev.request, ev.source)
            elif isinstance(ev, StrayResponse):
                self._forward_stray(ev.response)
            elif isinstance(ev, TransactionTimeout | TransportFailed):
                self._on_branch_failed(ev.key, 408 if isinstance(ev, TransactionTimeout) else 503)
            elif isinstance(ev, TransactionTerminated):
                self._on_terminated(ev.key)
        self._arm()

    def _arm(self) -> None:
        deadline = self.layer.next_deadline()
        if deadline is None:
            return
        # Timers are served on a 10 ms grid: one wake-up fires every timer due in it, instead
        # of one loop callback per transaction under load (SIP timers are hundreds of ms).
        deadline = math.ceil(deadline * 100.0) / 100.0
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self._run(self.layer.on_timer(self._now()))

    # Helpers ------------------------------------------------------------------------------------
    def _random(self, n: int) -> bytes:
        """``n`` bytes from the OS CSPRNG, drawn 4 KiB at a time (one syscall per ~500 ids)."""
        at = self._pool_at
        if at + n > len(self._pool):
            self._pool, at = os.urandom(4096), 0
        self._pool_at = at + n
        return self._pool[at:at + n]

    def _next_id(self) -> str:
        """A tag or branch suffix: a counter (unique) and 32 random bits (unguessable)."""
        self._counter += 1
        return f"{self._counter:x}{self._random(4).hex()}"

    def _reply(self, key: TxKey, req: Request, status: int, reason: str | None = None,
               headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        resp = self._make_response(req, status, reason, headers, body)
        self._run(self.layer.respond(key, resp, self._now()))

    def _make_response(self, req: Request, status: int, reason: str | None = None,
                       headers: list[tuple[str, str]] | None = None,
                       body: bytes = b"") -> Response:
        resp = Response(status, reason)
        h = resp.headers
        for value in req.headers.get_all("Via"):
            h.add("Via", value)
        h.add("From", req.headers.get("From") or "")
        to = req.headers.get("To") or ""
        if status > 100 and req.to.tag is None:
            to = f"{to};tag={self._next_id()}"
        h.add("To", to)
        h.add("Call-ID", req.call_id)
        h.add("CSeq", req.headers.get("CSeq") or "")
        if self.config.sip.server_header:
            h.add("Server", self.config.sip.server_header)
        for name, value in headers or []:
            h.add(name, value)
        resp.body = body
        return resp

    def _aor(self, user: str) -> str:
        """The canonical AoR of a local user (escaping as ``registrar.aor_for`` does)."""
        aor = self._aors.get(user)
        if aor is None:
            aor = str(SipUri(self._domain_host, user))
            if len(self._aors) < 100_000:
                self._aors[user] = aor
        return aor

    def _is_own_uri(self, uri: Uri) -> bool:
        if not isinstance(uri, SipUri):
            return False
        host = uri.host_bare.lower()
        if host not in self._own_hosts:
            return False
        if uri.port is None or host == self.config.sip.domain.lower():
            return True
        return uri.port in self._own_ports

    def _local_via(self, transport: str, towards: str) -> tuple[str, int]:
        addr = self.transport.local_address(transport, towards)
        if addr is None:
            addr = self.transport.local_address("udp", towards) or ("127.0.0.1", 5060)
        return addr

    def _record_route(self, transport: str, towards: str) -> str:
        host, port = self._local_via(transport, towards)
        tp = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{format_host(host)}:{port}{tp};lr>"

    def _peer_for(self, uri: Uri) -> Peer | None:
        if not isinstance(uri, SipUri):
            return None
        transport = uri.transport
        if transport not in self.transport.transports:
            return None
        host = uri.params.get("maddr") or uri.host_bare
        try:
            host = ipaddress.ip_address(host.strip("[]")).compressed
        except ValueError:
            resolved = self._dns_lookup(host)
            if resolved is None:
                return None
            host = resolved
        port = uri.port or (5061 if transport == "tls" else 5060)
        return Peer(transport, host, port)

    # Names (RFC 3263 §4.2 A/AAAA step only: no NAPTR/SRV) -------------------------------------
    _DNS_TTL = 60.0        # seconds a resolved name is reused
    _DNS_NEGATIVE_TTL = 10.0

    def _dns_lookup(self, name: str) -> str | None:
        """The cached address of ``name``; None if unknown (``_unresolved`` collects it)."""
        entry = self._dns.get(name.lower())
        if entry is not None and entry[0] > self._now():
            return entry[1]
        self._unresolved.add(name.lower())
        return None

    async def _resolve(self, names: set[str]) -> None:
        assert self._loop is not None
        for name in names:
            try:
                infos = await asyncio.wait_for(
                    self._loop.getaddrinfo(name, None, type=socket.SOCK_DGRAM), 5.0)
                # IPv4 first unless we only listen on IPv6 (a name often has both)
                v6_only = not any(":" not in h for h, _ in self._own_sent_by)
                infos.sort(key=lambda i: (i[0] == socket.AF_INET) == v6_only)
                addr: str | None = str(infos[0][4][0]) if infos else None
            except (TimeoutError, OSError, UnicodeError):
                addr = None
            ttl = self._DNS_TTL if addr else self._DNS_NEGATIVE_TTL
            if len(self._dns) > 10_000:
                self._dns.clear()
            self._dns[name] = (self._now() + ttl, addr)
            if addr is None:
                log.info("cannot resolve %s", name)

    # Requests ---------------------------------------------------------------------------------
    def _on_request(self, key: TxKey, req: Request, source: Peer) -> None:
        method = req.method
        if not isinstance(req.uri, SipUri):
            if method != "ACK":
                self._reply(key, req, 416)
            return
        if not self._pop_own_routes(req):
            self._reply(key, req, 400, "Bad Route")
            return
        if method == "INVITE" and req.to.tag is None and self.overloaded:
            self.stats["shed"] = self.stats.get("shed", 0) + 1
            self._reply(key, req, 503, "Overloaded", headers=[("Retry-After", "1")])
            return
        endpoint = self.endpoint
        if endpoint is not None:
            handle = endpoint.owns_request(key, req)
            if handle is not None:
                endpoint.on_request(handle, key, req, source)
                return
            if (method == "INVITE" and req.to.tag is None and self.take_call is not None
                    and self._offer_call(key, req, source)):
                return
            if (req.to.tag is not None and req.uri.user == "pbx" and self._is_own_uri(req.uri)
                    and not req.headers.values("Route")):
                # Addressed to the B2BUA's Contact, in a dialog it does not have (§12.2.2).
                if method != "ACK":
                    self._reply(key, req, 481)
                return
        if method == "CANCEL":
            self._on_cancel(key, req)
            return
        if req.headers.values("Route") or not self._is_own_uri(req.uri) or req.uri.user:
            if method == "REGISTER" and self._is_own_uri(req.uri):
                self._on_register(key, req, source)
                return
            self._proxy(key, req, source)
            return
        if method == "REGISTER":
            self._on_register(key, req, source)
        elif method == "OPTIONS":
            self._reply(key, req, 200, headers=[("Allow", ALLOW), ("Accept", "application/sdp"),
                                                ("Supported", "path, outbound")])
        elif method == "BYE":
            self._reply(key, req, 481)
        else:
            self._reply(key, req, 405, headers=[("Allow", "OPTIONS, REGISTER")])

    def _pop_own_routes(self, req: Request) -> bool:
        """Loose routing (§16.4): drop every top Route that names us; False if one is bad."""
        while True:
            top = req.headers.values("Route")
            if not top:
                return True
            try:
                route_uri = parse_address(top[0]).uri
            except ParseError:
                return False
            if not self._is_own_uri(route_uri):
                return True
            req.headers.remove_first_value("Route")

    def _offer_call(self, key: TxKey, req: Request, source: Peer) -> bool:
        """A new INVITE the B2BUA may take: True if taken (or refused on its behalf)."""
        assert self.take_call is not None
        rejected = check_request(req, self._own_sent_by)
        if rejected is not None:
            self._reply(key, req, *rejected)
            return True
        if not self._is_own_uri(req.uri):
            return False
        from_uri = req.from_.uri
        user = from_uri.user if isinstance(from_uri, SipUri) else None
        if (user and isinstance(from_uri, SipUri)
                and from_uri.host_bare.lower() in self._own_hosts
                and (self.users.get_ha1(user, "MD5") or self.users.get_ha1(user, "SHA-256"))
                and not self._trusted(source)):
            # A local identity must prove itself (no impersonation); anyone else may call
            # the PBX's numbers, as anyone may call a local user.
            if not self._wants(req):
                return False
            if not self._authenticate(key, req, user, proxy=True):
                return True
        return self.take_call(key, req, source)

    def _wants(self, req: Request) -> bool:
        wants = getattr(self.take_call, "wants", None)
        return True if wants is None else bool(wants(req))

    # For the B2BUA (pbx.pbx, pbx._transfer) ------------------------------------------------
    def is_own_uri(self, uri: Uri) -> bool:
        """True if ``uri`` names this server (its domain or a listening address)."""
        return self._is_own_uri(uri)

    def is_trusted_host(self, host: str) -> bool:
        """True if ``host`` (an IP literal) is in ``[sip] trusted``."""
        return self._trusted(Peer("udp", host, 5060))

    def user_uri(self, user: str) -> SipUri:
        """``sip:user@domain`` for a local user or number."""
        return SipUri(self._domain_host, user)

    # Host interface of the endpoint (pbx.sip.endpoint.Host) -----------------------------------
    def send_bytes(self, data: bytes, peer: Peer) -> None:
        self.transport.send(data, peer)

    def run_events(self, events: Sequence[object]) -> None:
        self._run(events)

    def peer_for(self, uri: Uri) -> Peer | None:
        return self._peer_for(uri)

    def local_address(self, transport: str, towards: str) -> tuple[str, int]:
        return self._local_via(transport, towards)

    def now(self) -> float:
        return self._now()

    def next_id(self) -> str:
        return self._next_id()

    def random(self) -> float:
        return int.from_bytes(self._random(4), "big") / 2**32

    # Registrar ----------------------------------------------------------------------------------
    def _challenge(self, key: TxKey, req: Request, stale: bool = False, proxy: bool = False,
                   user: str | None = None) -> None:
        """401/407 with one challenge per offered algorithm the user has an HA1 for."""
        algorithms = None
        if user is not None:
            algorithms = tuple(a for a in self.digest.algorithms
                               if self.users.get_ha1(user, a) is not None) or None
        values = self.digest.challenge(self._now_wall(), self._random(8), stale=stale,
                                       algorithms=algorithms)
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        self._reply(key, req, 407 if proxy else 401, headers=[(name, v) for v in values])

    @staticmethod
    def _now_wall() -> float:
        return time.time()

    def _authenticate(self, key: TxKey, req: Request, user: str, proxy: bool = False) -> bool:
        """True if ``req`` carries valid credentials for ``user``; else answers it and False."""
        header = "Proxy-Authorization" if proxy else "Authorization"
        values = req.headers.get_all(header)
        creds = None
        for value in values:
            try:
                c = auth.parse_credentials(value)
            except ParseError:
                self._reply(key, req, 400, "Bad Credentials")
                return False
            if c.realm == self.config.sip.realm:
                creds = c
                break
        if creds is None:
            self._challenge(key, req, proxy=proxy, user=user)
            return False
        if creds.username != user:
            self._reply(key, req, 403, "Credentials Do Not Match")
            return False
        ha1 = self.users.get_ha1(creds.username, creds.algorithm or "MD5")
        result = self.digest.verify(req.method, creds, ha1, self._now_wall())
        if result is auth.AuthResult.OK:
            return True
        if result is auth.AuthResult.STALE:
            self._challenge(key, req, stale=True, proxy=proxy, user=user)
        elif result is auth.AuthResult.REPLAY:
            self._challenge(key, req, proxy=proxy, user=user)
        else:
            self._reply(key, req, 403)
        return False

    def _on_register(self, key: TxKey, req: Request, source: Peer) -> None:
        to_uri = req.to.uri
        if not isinstance(to_uri, SipUri) or not to_uri.user:
            self._reply(key, req, 404)
            return
        user = to_uri.user
        if to_uri.host_bare.lower() not in self._own_hosts:
            self._reply(key, req, 404)  # §10.3 step 5: the AoR is not valid for our domain
            return
        if self.users.get_ha1(user, "MD5") is None and self.users.get_ha1(user, "SHA-256") is None:
            self._reply(key, req, 404)
            return
        if not self._authenticate(key, req, user):
            return
        aor = self._aor(user)
        current = self.bindings.get(aor, [])
        result = handle_register(req, aor, current, source, self._now_wall(), self.policy)
        if result.status == 200 and result.changed:
            if result.bindings:
                self.bindings[aor] = result.bindings
            else:
                self.bindings.pop(aor, None)
            self._dirty.add(aor)
            if self.on_registration is not None:
                try:
                    self.on_registration(aor, result.bindings, source)
                except Exception:
                    log.exception("registration hook failed")
        self._reply(key, req, result.status, result.reason, headers=result.response_headers)

    # Proxy ------------------------------------------------------------------------------------
    def _targets(self, req: Request) -> tuple[list[tuple[Uri, Peer | None]], int]:
        """Where ``req`` goes: (target URI, next hop) pairs, or an error status."""
        routes = req.headers.values("Route")
        if routes:
            route_uri = parse_address(routes[0]).uri
            return [(req.uri, self._peer_for(route_uri))], 0
        uri = req.uri
        assert isinstance(uri, SipUri)
        return self._targets_for(uri)

    def locate(self, target: str) -> tuple[list[tuple[Uri, Peer | None]], int]:
        """Where a call from the PBX to ``target`` goes: a local user's registered devices
        (each with the address it registered from), a ``[[routes]]`` match, or a SIP URI.
        An empty list comes with the status to report (404 unknown, 480 not registered)."""
        if target.lower().startswith(("sip:", "sips:")):
            try:
                uri = parse_uri(target)
            except ParseError:
                return [], 416
            if not isinstance(uri, SipUri):
                return [], 416
        else:
            if not target or any(ch in target for ch in "@;?<> \t\r\n"):
                return [], 484
            uri = SipUri(self._domain_host, target)
        return self._targets_for(uri)

    def credentials_for(self, target: str) -> tuple[str, str] | None:
        """The (username, password) of the ``[[routes]]`` entry a call to ``target`` takes,
        when it has some (a carrier that challenges); None for local users and URIs."""
        if target.lower().startswith(("sip:", "sips:")):
            return None
        if self.users.get_ha1(target, "MD5") or self.users.get_ha1(target, "SHA-256"):
            return None
        for route in self.config.routes:
            if route.apply(target) is not None:
                if route.username is not None and route.password is not None:
                    return route.username, route.password
                return None
        return None

    def _targets_for(self, uri: SipUri) -> tuple[list[tuple[Uri, Peer | None]], int]:
        if not self._is_own_uri(uri):
            return [(uri, self._peer_for(uri))], 0
        user = uri.user or ""
        known = (self.users.get_ha1(user, "MD5") is not None
                 or self.users.get_ha1(user, "SHA-256") is not None)
        if known:
            aor = self._aor(user)
            live = lookup_targets(self.bindings.get(aor, []), self._now_wall())
            if not live:
                return [], 480
            out: list[tuple[Uri, Peer | None]] = []
            for b in live:
                try:
                    contact = parse_uri(b.contact)
                except ParseError:
                    continue
                peer = None
                if b.source:
                    peer = _parse_peer(b.source)
                out.append((contact, peer or self._peer_for(contact)))
            return (out, 0) if out else ([], 480)
        for route in self.config.routes:
            target = route.apply(user)
            if target is not None:
                try:
                    t_uri = parse_uri(target)
                except ParseError:
                    return [], 500
                return [(t_uri, self._peer_for(t_uri))], 0
        return [], 404

    def _proxy(self, key: TxKey, req: Request, source: Peer) -> None:
        if req.method == "ACK":
            self._forward_stateless(req, source)
            return
        rejected = check_request(req, self._own_sent_by)
        if rejected is not None:
            self._reply(key, req, *rejected)
            return
        in_dialog = req.to.tag is not None
        if not in_dialog and not self._authorize_call(key, req, source):
            return
        self._route(key, req, source, in_dialog, resolved=False)

    def _route(self, key: TxKey, req: Request, source: Peer, in_dialog: bool,
               resolved: bool) -> None:
        """Forward to the targets; a target named by an unresolved host name first waits
        for its resolution (once), the rest of the server carrying on meanwhile."""
        self._unresolved = set()
        targets, status = self._targets(req)
        if self._unresolved and not resolved:
            names, self._unresolved = self._unresolved, set()
            if req.method == "INVITE":
                self._reply(key, req, 100)

            def resume(task: asyncio.Task[None]) -> None:
                if not task.cancelled():
                    self._route(key, req, source, in_dialog, resolved=True)

            asyncio.ensure_future(self._resolve(names)).add_done_callback(resume)
            return
        if status:
            self._reply(key, req, status)
            return
        if req.method == "INVITE" and not resolved:
            self._reply(key, req, 100)
        ctx = ResponseContext(req.method)
        state = _Proxied(key, req, source, ctx)
        self._proxied[key] = state
        now = self._now()
        events: list[object] = []
        for target, peer in targets:
            if peer is None:
                continue
            host, port = self._local_via(peer.transport, peer.host)
            rr = None
            if not in_dialog:
                rr = self._record_route(peer.transport, peer.host)
                if peer.transport != source.transport:
                    rr = f"{rr}, {self._record_route(source.transport, source.host)}"
            fwd = forward_request(req, target, via_host=host, via_port=port,
                                  transport=peer.transport, branch_id=self._next_id(),
                                  record_route=rr)
            ckey, evs = self.layer.send_request(fwd, peer, now)
            branch = Branch(ckey, fwd)
            ctx.add_branch(branch)
            state.branches[ckey] = branch
            self._branch_owner[ckey] = state
            self._branch_peer[ckey] = peer
            events.extend(evs)
        if not ctx.branches:
            del self._proxied[key]
            self._reply(key, req, 502 if status == 0 else status, "No Route To Target")
            return
        if req.method == "INVITE":
            assert self._loop is not None
            state.timer_c = self._loop.call_later(180.0, self._timer_c, key)
        self._run(events)

    def _authorize_call(self, key: TxKey, req: Request, source: Peer) -> bool:
        """Out-of-dialog requests: local identities must authenticate (no impersonation);
        anyone may call a local user; routes beyond the PBX need a local user or a trusted
        source."""
        from_uri = req.from_.uri
        user = from_uri.user if isinstance(from_uri, SipUri) else None
        if (user and isinstance(from_uri, SipUri)
                and from_uri.host_bare.lower() in self._own_hosts
                and (self.users.get_ha1(user, "MD5") or self.users.get_ha1(user, "SHA-256"))):
            return self._authenticate(key, req, user, proxy=True)
        uri = req.uri
        assert isinstance(uri, SipUri)
        if self._is_own_uri(uri) and uri.user and (
                self.users.get_ha1(uri.user, "MD5") or self.users.get_ha1(uri.user, "SHA-256")):
            return True
        if self._trusted(source):
            return True
        self._reply(key, req, 403, "Forbidden")
        return False

    def _trusted(self, source: Peer) -> bool:
        """Source address in ``[sip] trusted`` (memoised: asked for every message)."""
        hit = self._trusted_cache.get(source.host)
        if hit is None:
            try:
                addr = ipaddress.ip_address(source.host)
                hit = any(addr in net for net in self._trusted_nets)
            except ValueError:
                hit = False
            if len(self._trusted_cache) > 65_536:
                self._trusted_cache.clear()
            self._trusted_cache[source.host] = hit
        return hit

    def _admit(self, peer: Peer) -> bool:
        """The per-source rate limit (DESIGN: in front of everything); trusted are exempt."""
        assert self.limiter is not None
        if self._trusted(peer):
            return True
        if self.limiter.allow(peer.host, self._now()):
            return True
        if self.limiter.dropped % 1000 == 1:
            log.warning("rate limit: dropping messages from %s (%d dropped so far)",
                        peer.host, self.limiter.dropped)
        return False

    def _timer_c(self, key: TxKey) -> None:
        state = self._proxied.get(key)
        if state is None or state.context.final_sent:
            return
        self._cancel_branches(state, state.context.cancel_all())
        for branch in state.context.branches:
            if branch.final is None and not branch.provisional:
                self._send_upstream(state, state.context.branch_failed(branch, 408))

    def _on_cancel(self, key: TxKey, req: Request) -> None:
        invite_key = self.layer.find_invite_for_cancel(req)
        state = self._proxied.get(invite_key) if invite_key is not None else None
        if state is None:
            self._reply(key, req, 481)
            return
        self._reply(key, req, 200)
        self._cancel_branches(state, state.context.cancel_all())

    def _cancel_branches(self, state: _Proxied, branches: list[Branch]) -> None:
        now = self._now()
        events: list[object] = []
        for branch in branches:
            cancel = create_cancel(branch.request)
            peer = self._branch_peer.get(branch.key)  # type: ignore[call-overload]
            if peer is None:
                continue
            _, evs = self.layer.send_request(cancel, peer, now)
            events.extend(evs)
        self._run(events)

    def _on_branch_response(self, ckey: TxKey, resp: Response) -> None:
        state = self._branch_owner.get(ckey)
        if state is None:
            return  # response to a CANCEL we sent, or to a finished context
        branch = state.branches[ckey]
        to_send, to_cancel = state.context.on_response(branch, resp)
        self._send_upstream(state, to_send)
        if to_cancel:
            self._cancel_branches(state, to_cancel)

    def _send_upstream(self, state: _Proxied, responses: list[Response]) -> None:
        now = self._now()
        for resp in responses:
            if resp.status >= 200 and state.timer_c is not None and state.context.final_sent:
                state.timer_c.cancel()
            self._run(self.layer.respond(state.server_key, resp, now))

    def _on_branch_failed(self, ckey: TxKey, status: int) -> None:
        state = self._branch_owner.get(ckey)
        if state is None:
            return
        branch = state.branches[ckey]
        self._send_upstream(state, state.context.branch_failed(branch, status))

    def _on_terminated(self, key: TxKey) -> None:
        state = self._branch_owner.pop(key, None)
        self._branch_peer.pop(key, None)
        if state is not None:
            state.branches.pop(key, None)
            if not state.branches:
                self._proxied.pop(state.server_key, None)
                if state.timer_c is not None:
                    state.timer_c.cancel()
        st = self._proxied.get(key)
        if st is not None and not st.branches:
            del self._proxied[key]

    def _forward_stateless(self, req: Request, source: Peer) -> None:
        """ACK for a 2xx and other end-to-end requests: forwarded without a transaction."""
        if not self._pop_own_routes(req):
            return
        rejected = check_request(req, self._own_sent_by)
        if rejected is not None:
            return
        try:
            targets, status = self._targets(req)
        except ParseError:
            return
        if status or not targets or targets[0][1] is None:
            return
        target, peer = targets[0]
        assert peer is not None
        host, port = self._local_via(peer.transport, peer.host)
        branch_id = hashlib.blake2b(req.branch.encode(), digest_size=6).hexdigest()
        fwd = forward_request(req, target, via_host=host, via_port=port, transport=peer.transport,
                              branch_id=branch_id, record_route=None)
        self.transport.send(bytes(fwd), peer)

    def _forward_stray(self, resp: Response) -> None:
        """A response no client transaction matches is dropped (RFC 6026 §8.9, replacing the
        stateless forwarding of RFC 3261 §16.7): 2xx retransmissions are absorbed by the
        INVITE client transaction's Accepted state, so anything else here is spurious."""
        self.stats["stray_responses"] = self.stats.get("stray_responses", 0) + 1
        log.debug("dropped a response matching no transaction: %s %s", resp.status,
                  resp.headers.get("Call-ID"))


def _parse_peer(text: str) -> Peer | None:
    transport, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    try:
        return Peer(transport, host.strip("[]"), int(port))
    except ValueError:
        return None


def _tune_gc() -> None:
    """Keep the cyclic collector off the hot path.

    Start-up objects (config, users, compiled patterns) are frozen out of collection, and the
    young-generation threshold raised: per-message garbage is freed by reference counting, so
    frequent young collections only cost time (py-spy showed ~30 % of CPU in them under load).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def serve(config: Config) -> None:
    """Run the reference PBX until cancelled."""
    server = SipServer(config)
    await server.start()
    _tune_gc()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()

