"""Stateful proxy decisions (RFC 3261 §16), pure: request checks, forwarding, best response.

The endpoint shell owns transactions and sockets; this module decides what a forwarded request
looks like (§16.6), whether a request loops or ran out of hops (§16.3), and which of the
branches' responses goes upstream (§16.7).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pbx.sip.message import Request, Response
from pbx.sip.uri import SipUri, Uri, format_host
from pbx.sip.via import MAGIC_COOKIE, Via

__all__ = [
    "Branch",
    "ResponseContext",
    "check_request",
    "forward_request",
    "loop_hash",
]

DEFAULT_MAX_FORWARDS = 70


def loop_hash(req: Request) -> str:
    """Hash of the fields that identify a request on its path, for loop detection (§16.6 8)."""
    h = hashlib.blake2b(digest_size=8)
    to_tag = req.to.tag or ""
    from_tag = req.from_.tag or ""
    for part in (str(req.uri), from_tag, to_tag, req.call_id, str(req.cseq.seq),
                 ",".join(req.headers.values("Proxy-Require")),
                 ",".join(req.headers.values("Route"))):
        h.update(part.encode("utf-8", "replace"))
        h.update(b"\x00")
    return h.hexdigest()


def check_request(req: Request, own_sent_by: set[tuple[str, int]]) -> tuple[int, str] | None:
    """Validation of §16.3: returns (status, reason) to reject with, or None to go on."""
    mf = req.headers.get("Max-Forwards")
    if mf is not None and int(mf) == 0:
        return 483, "Too Many Hops"
    if req.headers.values("Proxy-Require"):
        return 420, "Bad Extension"
    digest = loop_hash(req)
    for via in req.vias:
        if (via.host_bare, via.port or 5060) in own_sent_by:
            branch = via.branch or ""
            if branch.startswith(MAGIC_COOKIE) and branch[len(MAGIC_COOKIE):].split(".")[0] == digest:
                return 482, "Loop Detected"
    return None


def forward_request(req: Request, target: Uri, *, via_host: str, via_port: int, transport: str,
                    branch_id: str, record_route: str | None) -> Request:
    """A copy of ``req`` ready to go to ``target`` (§16.6): new Request-URI, Max-Forwards - 1,
    Record-Route, and our Via on top with a branch carrying the loop hash."""
    out = req.copy()
    out.uri = target.copy() if isinstance(target, SipUri) else target
    mf = req.headers.get("Max-Forwards")
    out.headers.set("Max-Forwards", str(int(mf) - 1 if mf is not None else DEFAULT_MAX_FORWARDS))
    if record_route is not None and req.method in ("INVITE", "SUBSCRIBE", "REFER", "NOTIFY"):
        out.headers.insert_before("Record-Route", record_route)
    via = Via(transport.upper(), format_host(via_host), via_port,
              {"branch": f"{MAGIC_COOKIE}{loop_hash(req)}.{branch_id}", "rport": None})
    out.headers.insert_before("Via", str(via))
    return out


def upstream_response(resp: Response) -> Response:
    """The response to send upstream: our own Via removed (§16.7 step 9)."""
    out = resp.copy()
    out.headers.remove_first_value("Via")
    return out


@dataclass(slots=True)
class Branch:
    """One forwarded copy of a request and what it has heard."""

    key: object
    request: Request
    provisional: bool = False
    final: Response | None = None
    cancel_pending: bool = False
    cancelled: bool = False


def _rank(status: int) -> tuple[int, int]:
    """Lower is better among non-2xx finals (§16.7 step 6): 6xx, then 4xx/5xx/3xx."""
    cls = status // 100
    if cls == 6:
        return (0, status)
    order = {4: 1, 5: 3, 3: 2}
    # 503 is forwarded as 500 anyway; prefer specific 4xx (but not 408) over generic failures
    if status == 408:
        return (4, status)
    return (order.get(cls, 5), status)


@dataclass(slots=True)
class ResponseContext:
    """The responses a forked request collects and the choice of what goes upstream."""

    method: str
    branches: list[Branch] = field(default_factory=list)
    best: Response | None = None
    final_sent: bool = False
    cancelled: bool = False

    def add_branch(self, branch: Branch) -> None:
        self.branches.append(branch)

    def branch_for(self, key: object) -> Branch | None:
        for b in self.branches:
            if b.key == key:
                return b
        return None

    @property
    def all_done(self) -> bool:
        return all(b.final is not None for b in self.branches)

    def on_response(self, branch: Branch, resp: Response) -> tuple[list[Response], list[Branch]]:
        """Feed one branch's response; returns (responses to send upstream, branches to cancel)."""
        status = resp.status
        to_send: list[Response] = []
        to_cancel: list[Branch] = []
        if status < 200:
            branch.provisional = True
            if branch.cancel_pending:
                to_cancel.append(branch)
                branch.cancel_pending = False
            if status > 100 and not self.final_sent:
                to_send.append(upstream_response(resp))
            return to_send, to_cancel
        first_final = branch.final is None
        if first_final:
            branch.final = resp
        if 200 <= status < 300:
            # Every 2xx goes upstream (§16.7 step 5), and the other branches are cancelled.
            to_send.append(upstream_response(resp))
            self.final_sent = True
            if self.method == "INVITE":
                to_cancel.extend(self._cancel_others(branch))
            return to_send, to_cancel
        if not first_final or self.final_sent:
            return to_send, to_cancel
        if status >= 600:
            to_cancel.extend(self._cancel_others(branch))
        if self.best is None or _rank(status) < _rank(self.best.status):
            self.best = resp
        if self.all_done:
            to_send.append(self._choose_final())
            self.final_sent = True
        return to_send, to_cancel

    def branch_failed(self, branch: Branch, status: int = 408) -> list[Response]:
        """A branch timed out or could not be sent: count it as a final ``status``."""
        if branch.final is not None:
            return []
        fake = Response(status, None, branch.request.headers.copy())
        fake.headers.remove("Record-Route")
        fake.headers.remove("Contact")
        fake.headers.remove("Route")
        fake.headers.remove("Max-Forwards")
        fake.body = b""
        fake.headers.remove("Content-Type")
        branch.final = fake
        if self.final_sent:
            return []
        if self.best is None or _rank(status) < _rank(self.best.status):
            self.best = fake
        if self.all_done:
            self.final_sent = True
            return [self._choose_final()]
        return []

    def cancel_all(self) -> list[Branch]:
        """Upstream CANCEL: the branches to CANCEL now (others when they send a provisional)."""
        self.cancelled = True
        return self._cancel_others(None)

    def _cancel_others(self, keep: Branch | None) -> list[Branch]:
        out: list[Branch] = []
        for b in self.branches:
            if b is keep or b.final is not None or b.cancelled:
                continue
            if b.provisional:
                b.cancelled = True
                out.append(b)
            else:
                b.cancel_pending = True
        return out

    def _choose_final(self) -> Response:
        best = self.best
        assert best is not None
        out = upstream_response(best)
        if out.status == 503:  # §16.7 step 6: a 503 from downstream becomes a 500
            out.status, out.reason = 500, "Server Internal Error"
        if out.status in (401, 407):
            # Collect every challenge from every branch (§16.7 step 7).
            for name in ("WWW-Authenticate", "Proxy-Authenticate"):
                seen = set(out.headers.get_all(name))
                for b in self.branches:
                    if b.final is not None and b.final is not best:
                        for value in b.final.headers.get_all(name):
                            if value not in seen:
                                out.headers.add(name, value)
                                seen.add(value)
        return out
