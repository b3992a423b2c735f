"""Transfers asked for by phones: REFER (RFC 3515) in a leg's dialog.

The PBX keeps media anchored, so a transfer never leaves it: the party being transferred (the
caller) stays on its dialog with the PBX and is bridged to the new party inside the engine.

- Blind: ``Refer-To: <sip:1003@pbx>`` (a local user or number, or a URI on a ``[sip] trusted``
  network; anything else is refused with 403). The PBX answers 202, reports ``100 Trying`` in a NOTIFY,
  dials the target for the caller (who hears ringback), and on answer reports ``200 OK``, swaps
  the bridge and hangs up the transferor. If the target fails the NOTIFY says so and the
  transferor stays connected (it may retrieve the call).
- Attended: ``Refer-To: <sip:1003@pbx?Replaces=...>`` naming the transferor's consultation
  call, which also goes through the PBX (from the same address as the REFER). The party of that call's other leg is moved into this
  call and bridged with the caller; both of the transferor's dialogs are hung up.

Transfers from the caller's own leg (the call's A leg) are refused with 403: the call's
identity (record, app) belongs to that leg.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pbx.errors import DialFailed, ParseError
from pbx.events import CallTransferred, LegStarted
from pbx.sip.invite import DialogRequest
from pbx.sip.refer import Refer, notify_headers, parse_refer, sipfrag
from pbx.sip.uri import SipUri

if TYPE_CHECKING:
    from pbx.call import Call, Leg
    from pbx.pbx import Pbx

__all__ = ["on_refer"]

log = logging.getLogger("pbx.transfer")


def _notify(leg: Leg, refer: Refer, status: int, *, final: bool) -> None:
    if not refer.subscription or leg.state == "ended":
        return
    headers = notify_headers(refer.cseq, "terminated" if final else "active")
    ctype = next(v for n, v in headers if n == "Content-Type")
    rest = [(n, v) for n, v in headers if n != "Content-Type"]
    body = sipfrag(status)
    leg._handle.act(lambda s, now: s.request("NOTIFY", now, body=body, content_type=ctype,
                                             headers=rest))


def _target_text(pbx: Pbx, refer: Refer) -> str:
    """An extension or number when the target is ours, else the URI."""
    uri = refer.target.uri
    assert pbx.server is not None
    if isinstance(uri, SipUri) and uri.user and pbx.server.is_own_uri(uri):
        return uri.user
    return str(uri)


def _allowed(pbx: Pbx, refer: Refer) -> bool:
    """A blind transfer may go to the PBX's own users and numbers, or to a SIP URI whose host
    is an address in ``[sip] trusted`` (a known trunk or peer); nowhere else."""
    uri = refer.target.uri
    server = pbx.server
    if not isinstance(uri, SipUri) or server is None or refer.target.method != "INVITE":
        return False
    if server.is_own_uri(uri):
        return bool(uri.user)
    return server.is_trusted_host(uri.host_bare)


def on_refer(pbx: Pbx, leg: Leg, ev: DialogRequest) -> None:
    """A REFER arrived in ``leg``'s dialog."""
    key = ev.key
    try:
        refer = parse_refer(ev.request)
    except ParseError as exc:
        why = exc.reason[:60]
        leg._handle.act(lambda s, now: s.respond(key, 400, now, reason=why))
        return
    call = leg._call
    if call is None or leg is call or call.state == "ended" or call._peer is not leg:
        leg._handle.act(lambda s, now: s.respond(key, 403, now,
                                                 reason="Only The Called Party Transfers"))
        return
    if refer.target.replaces is not None:
        _attended(pbx, call, leg, refer, key)
        return
    if not _allowed(pbx, refer):
        # A transferor must not make the PBX dial anywhere it likes (toll fraud).
        leg._handle.act(lambda s, now: s.respond(key, 403, now, reason="Target Not Allowed"))
        return
    leg._handle.act(lambda s, now: s.respond(key, 202, now))
    _notify(leg, refer, 100, final=False)
    pbx._spawn(_blind(pbx, call, leg, refer))


async def _blind(pbx: Pbx, call: Call, leg: Leg, refer: Refer) -> None:
    target = _target_text(pbx, refer)
    pbx._unlink(call, leg)
    call._stop_moh()
    try:
        new = await call.dial(target)
    except DialFailed as exc:
        _notify(leg, refer, exc.status or 480, final=True)
        if leg.state != "ended" and call.state != "ended":
            pbx._link(call, leg)
        return
    except Exception:          # the caller hung up meanwhile, or the call is ending
        _notify(leg, refer, 487, final=True)
        return
    _notify(leg, refer, 200, final=True)
    pbx._swap(call, leg, new)
    call._publish(CallTransferred, leg_id=leg.id, target=new.party, attended=False)
    leg.hangup_reason = "transferred"
    leg._hangup_now()


def _attended(pbx: Pbx, call: Call, leg: Leg, refer: Refer, key: Any) -> None:
    replaces = refer.target.replaces
    assert replaces is not None and pbx.endpoint is not None
    handle = pbx.endpoint.find(replaces.call_id, replaces.to_tag)
    other = handle.owner if handle is not None else None
    dialog = handle.session.dialog if handle is not None else None
    if (other is None or dialog is None or dialog.id.remote_tag != replaces.from_tag
            or other.state != "answered"):
        leg._handle.act(lambda s, now: s.respond(key, 481, now))
        return
    target = other._peer
    other_call = other._call
    same_party = (handle is not None and handle.peer is not None and leg._handle.peer is not None
                  and handle.peer.host == leg._handle.peer.host)
    if not same_party:
        # Only the transferor may hand over its own consultation call.
        leg._handle.act(lambda s, now: s.respond(key, 403, now, reason="Not Your Dialog"))
        return
    # The consultation must be the transferor's own call into the PBX (its A leg) bridged to
    # the party it consulted; that party moves into this call.
    if target is None or other_call is None or other is not other_call or target is call:
        leg._handle.act(lambda s, now: s.respond(key, 603, now, reason="Cannot Replace"))
        return
    leg._handle.act(lambda s, now: s.respond(key, 202, now))
    _notify(leg, refer, 100, final=False)
    pbx._unlink(other, target)
    other._peer = None
    target._peer = None
    if target in other_call.legs:
        other_call.legs.remove(target)
    target._call = call
    call._publish(LegStarted, leg_id=target.id, party=target.party, dialed=target.party)
    pbx._swap(call, leg, target)
    call._publish(CallTransferred, leg_id=leg.id, target=target.party, attended=True)
    _notify(leg, refer, 200, final=True)
    leg.hangup_reason = "transferred"
    other.hangup_reason = "transferred"
    leg._hangup_now()
    other._hangup_now()
