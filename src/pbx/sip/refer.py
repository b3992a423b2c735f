"""Call transfer pieces: REFER (RFC 3515), Replaces (RFC 3891), Referred-By (RFC 3892) and the
message/sipfrag bodies of REFER's NOTIFYs (RFC 3420).

Pure parsing, formatting and matching; the endpoint sends and receives the messages.

Receiving a REFER (a phone transfers its call): ``parse_refer(request)`` checks there is exactly
one Refer-To (RFC 3515 §2.4.1) and returns the target (``ReferTarget``: the URI without its
headers, the ``Replaces`` it carried for an attended transfer, the other URI headers the new
request should carry), the Referred-By to copy into the new INVITE (RFC 3892) and whether the
REFERer wants NOTIFYs (RFC 4488 ``Refer-Sub``). After the 202, progress goes back in NOTIFYs:
``notify_headers(refer_cseq, "active" | "terminated")`` and the body ``sipfrag(status)``.

Sending one (transfer from the API): ``refer_to_value(uri, replaces)`` is the Refer-To value,
with ``Replaces.targeting(dialog_id)`` for an attended transfer; ``parse_refer_notify(notify)``
reads the NOTIFYs that come back.

Receiving an INVITE with Replaces: ``replaces_of(request)``, then
``find_replaced(replaces, dialogs)`` and ``replace_action(replaces, state, initiated_here=...)``
decide (RFC 3891 §3): reject with a status, or accept and end the old dialog with BYE or CANCEL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar
from urllib.parse import unquote

from pbx.errors import ParseError
from pbx.sip._lex import TOKEN_RE, WS, parse_params, scan_quoted
from pbx.sip.address import Address, parse_address
from pbx.sip.dialog import DialogId, DialogState
from pbx.sip.message import Request, canonical_name, reason_phrase
from pbx.sip.uri import SipUri, Uri

__all__ = [
    "Refer",
    "ReferNotify",
    "ReferTarget",
    "Replaces",
    "find_replaced",
    "notify_headers",
    "parse_refer",
    "parse_refer_notify",
    "parse_refer_to",
    "parse_referred_by",
    "parse_replaces",
    "parse_sipfrag",
    "refer_to_value",
    "replace_action",
    "replaces_of",
    "sipfrag",
]

_T = TypeVar("_T")

SIPFRAG_TYPE = "message/sipfrag;version=2.0"
MAX_STATUS_LINE = 1024  # a sipfrag status line longer than this is garbage

# Call-ID as the Replaces header writes it: RFC 3261's callid is word ["@" word], but peers'
# Call-IDs are matched as they are, so anything visible but ';' (which starts the parameters).
_CALL_ID = re.compile(r"[\x21-\x3a\x3c-\x7e]+")
# Visible ASCII: what a URI's header part may hold before unescaping (escapes checked apart).
_URI_HEADERS = re.compile(r"[\x21-\x7e]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9])(?: [^\x00-\x08\x0a-\x1f\x7f]*)?",
                          re.IGNORECASE)
_CID = re.compile(r'"[^"\\\s@]+@[^"\\\s@]+"')

# URI headers a referee must not copy into the request it sends (RFC 3261 §19.1.5: dangerous,
# or would misstate our location or capabilities), and those that would corrupt the request
# the endpoint builds itself (To, Max-Forwards, the body and its description).
_UNSAFE_HEADERS = frozenset({
    "from", "to", "call-id", "cseq", "via", "record-route", "route", "contact", "accept",
    "accept-encoding", "accept-language", "allow", "organization", "supported", "user-agent",
    "max-forwards", "content-length", "content-type", "content-encoding", "content-disposition",
    "body",
})


# Replaces --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replaces:
    """A Replaces header (RFC 3891 §6.1): the dialog to replace, named from the point of view
    of the UA that receives it: ``to_tag`` is that UA's local tag, ``from_tag`` its peer's.
    ``early_only``: replace only a dialog that is still early (§3, 486 otherwise)."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    def __post_init__(self) -> None:
        if _CALL_ID.fullmatch(self.call_id) is None:
            raise ValueError(f"Call-ID {self.call_id!r} cannot be written in a Replaces header")
        for name, tag in (("to-tag", self.to_tag), ("from-tag", self.from_tag)):
            if not TOKEN_RE.fullmatch(tag):
                raise ValueError(f"{name} {tag!r} is not a token")

    @classmethod
    def targeting(cls, dialog: DialogId, *, early_only: bool = False) -> Replaces:
        """The Replaces that our peer in ``dialog`` (our view of it) will match against its own
        view: its local tag is our remote tag. A missing tag (RFC 2543 peer) is written ``0``,
        which matches both ``0`` and no tag (RFC 3891 §6.1)."""
        return cls(dialog.call_id, dialog.remote_tag or "0", dialog.local_tag or "0", early_only)

    @property
    def dialog_id(self) -> DialogId:
        """The id of the replaced dialog as its recipient keys it (``request_dialog_id``)."""
        return DialogId(self.call_id, self.to_tag, self.from_tag)

    def __str__(self) -> str:
        text = f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}"
        return text + ";early-only" if self.early_only else text


def parse_replaces(value: str) -> Replaces:
    """Parse a Replaces value: ``callid *(;to-tag=token / ;from-tag=token / ;early-only /
    ;generic-param)`` with exactly one to-tag and one from-tag (RFC 3891 §6.1). Other
    parameters are ignored; parameter names are case-insensitive."""
    text = value.strip(WS)
    semi = text.find(";")
    call_id = (text if semi < 0 else text[:semi]).rstrip(WS)
    if _CALL_ID.fullmatch(call_id) is None:
        raise ParseError("bad Call-ID in Replaces", data=value)
    params = parse_params(text[semi:], "Replaces") if semi >= 0 else {}
    tags: list[str] = []
    for name in ("to-tag", "from-tag"):
        tag = params.get(name)
        if tag is None or TOKEN_RE.fullmatch(tag) is None:
            raise ParseError(f"Replaces needs one {name} token", data=value)
        tags.append(tag)
    if "early-only" in params and params["early-only"] is not None:
        raise ParseError("early-only takes no value", data=value)
    return Replaces(call_id, tags[0], tags[1], "early-only" in params)


def replaces_of(request: Request) -> Replaces | None:
    """The Replaces of an incoming request, or None. More than one, or one in a request other
    than INVITE, is a ``ParseError`` (answer 400, RFC 3891 §3)."""
    lines = request.headers.get_all("Replaces")
    if not lines:
        return None
    if request.method != "INVITE":
        raise ParseError(f"Replaces in a {request.method} request")
    if len(lines) > 1:
        raise ParseError("more than one Replaces header")
    return parse_replaces(lines[0])


def find_replaced(replaces: Replaces,
                  dialogs: Mapping[DialogId, _T]) -> tuple[DialogId, _T] | None:
    """The entry of ``dialogs`` (keyed by our ``DialogId``s) that ``replaces`` names, or None
    (answer 481). The to-tag is compared with our local tag, the from-tag with the remote
    one (RFC 3891 §3). A tag of ``0`` matches both ``0`` and no tag (RFC 2543 peers, §6.1);
    an exact match wins."""
    key = replaces.dialog_id
    if key in dialogs:
        return key, dialogs[key]
    locals_ = (replaces.to_tag, "") if replaces.to_tag == "0" else (replaces.to_tag,)
    remotes = (replaces.from_tag, "") if replaces.from_tag == "0" else (replaces.from_tag,)
    for local in locals_:
        for remote in remotes:
            key = DialogId(replaces.call_id, local, remote)
            if key in dialogs:
                return key, dialogs[key]
    return None


def replace_action(replaces: Replaces, state: DialogState, *,
                   initiated_here: bool) -> int | Literal["BYE", "CANCEL"]:
    """What RFC 3891 §3 says to do with an INVITE whose Replaces matched a dialog (an INVITE
    dialog: one made by anything else is a 481) in ``state``; ``initiated_here``: we sent the
    INVITE that made it.

    An int is the status to reject the new INVITE with: 603 for a terminated dialog, 486 for a
    confirmed one when ``early-only`` is set, 481 for an early dialog we did not initiate.
    ``"BYE"``/``"CANCEL"``: accept the new INVITE, then end the old dialog that way (confirmed,
    or early and ours). Checking that the sender may replace the dialog (403) is the caller's.
    """
    if state is DialogState.TERMINATED:
        return 603
    if state is DialogState.CONFIRMED:
        return 486 if replaces.early_only else "BYE"
    return "CANCEL" if initiated_here else 481


# Refer-To ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferTarget:
    """Where a REFER sends its recipient: ``uri`` without headers, the ``replaces`` its URI
    carried (attended transfer), the display name, and the other URI headers the new request
    should carry (canonical names; RFC 3261 §19.1.5's unsafe ones dropped)."""

    uri: Uri
    replaces: Replaces | None = None
    display: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def method(self) -> str:
        """The request to send: the URI's ``method`` parameter, INVITE by default (RFC 3515
        §2.1)."""
        if isinstance(self.uri, SipUri):
            method = self.uri.params.get("method")
            if method:
                return method.upper()
        return "INVITE"


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text) is not None:
        raise ParseError("bad escape in URI header", data=text)
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ParseError("escaped bytes in URI header are not UTF-8", data=text) from None


def _lenient_headers(text: str) -> list[tuple[str, str]]:
    """Name/value pairs of a URI's header part, unescaped, read more leniently than RFC 3261:
    phones send ``@``, ``;`` and ``=`` raw inside a Replaces value. Items are split at ``&``
    and at the first raw ``=``; an item with no raw ``=`` is unescaped first and split at its
    first ``=`` (as in RFC 3515 §2.1's own ``Call-ID%3D...`` example)."""
    if _URI_HEADERS.fullmatch(text) is None:
        raise ParseError("invalid character in URI headers", data=text)
    out: list[tuple[str, str]] = []
    for item in text.split("&"):
        if not item:
            continue
        if "=" in item:
            raw_name, _, raw_value = item.partition("=")
            out.append((_unescape(raw_name), _unescape(raw_value)))
        else:
            name, eq, value = _unescape(item).partition("=")
            if not eq:
                raise ParseError("URI header without a value", data=item)
            out.append((name, value))
    return out


def _split_address(text: str) -> tuple[Address, list[tuple[str, str]]]:
    """The address (URI without headers) and URI headers of a Refer-To value.

    The strict grammar first (``pbx.sip.uri``), so a user part holding an escaped-looking
    ``?`` reads right; if that fails, a sip/sips URI in ``<...>`` is cut at its first ``?`` and
    the header part read leniently. The strict error is raised if both fail.
    """
    try:
        address = parse_address(text)
    except ParseError as exc:
        start = scan_quoted(text, 0) if text[:1] == '"' else 0
        lt = text.find("<", start)
        gt = text.find(">", lt + 1) if lt >= 0 else -1
        inner = text[lt + 1 : gt] if gt >= 0 else ""
        scheme = inner[:5].lower()
        question = inner.find("?")
        if question < 0 or not (scheme.startswith("sip:") or scheme == "sips:"):
            raise
        try:
            headers = _lenient_headers(inner[question + 1 :])
            address = parse_address(text[: lt + 1] + inner[:question] + text[gt:])
        except ParseError:
            raise exc from None
        return address, headers
    uri = address.uri
    if not isinstance(uri, SipUri) or not uri.headers:
        return address, []
    headers = list(uri.headers.items())
    uri = uri.copy()
    uri.headers.clear()
    return Address(uri, address.display, address.params), headers


def parse_refer_to(value: str) -> ReferTarget:
    """Parse a Refer-To value (RFC 3515 §2.1): a name-addr or addr-spec. A sip/sips URI's
    headers are taken off: a ``Replaces`` among them is parsed (RFC 3891 §6.1), the others are
    kept in ``headers`` unless unsafe to copy (RFC 3261 §19.1.5). Header parameters of Refer-To
    itself are ignored."""
    text = value.strip(WS)
    if not text:
        raise ParseError("empty Refer-To", data=value)
    address, raw_headers = _split_address(text)
    replaces: Replaces | None = None
    kept: list[tuple[str, str]] = []
    for name, header_value in raw_headers:
        if TOKEN_RE.fullmatch(name) is None:
            raise ParseError("bad URI header name", data=value)
        if _CONTROL.search(header_value) is not None:
            raise ParseError("control character in URI header", data=value)
        canon = canonical_name(name)
        key = canon.lower()
        if key == "replaces":
            if replaces is not None:
                raise ParseError("more than one Replaces in Refer-To", data=value)
            replaces = parse_replaces(header_value)
        elif key not in _UNSAFE_HEADERS:
            kept.append((canon, header_value))
    return ReferTarget(address.uri, replaces, address.display, tuple(kept))


def refer_to_value(uri: Uri, replaces: Replaces | None = None, *,
                   display: str | None = None) -> str:
    """A Refer-To value for ``uri``, with ``replaces`` escaped into its headers (RFC 3891
    §6.1, e.g. ``<sip:bob@b.example?Replaces=abc%40a.example%3Bto-tag%3D1%3Bfrom-tag%3D2>``).
    Always in angle brackets; ``parse_refer_to`` reads it back."""
    if replaces is not None:
        if not isinstance(uri, SipUri):
            raise ValueError("Replaces can only ride on a sip or sips URI")
        uri = uri.copy()
        for name in [n for n in uri.headers if n.lower() == "replaces"]:
            del uri.headers[name]
        uri.headers["Replaces"] = str(replaces)
    return str(Address(uri, display))


# REFER requests and Referred-By ----------------------------------------------------------------


def parse_referred_by(value: str) -> Address:
    """Parse a Referred-By value (RFC 3892): a name-addr or addr-spec with parameters; a
    ``cid`` parameter must be a quoted ``"local@domain"``."""
    address = parse_address(value)
    if "cid" in address.params:
        cid = address.params["cid"]
        if cid is None or _CID.fullmatch(cid) is None:
            raise ParseError("bad cid in Referred-By", data=value)
    return address


class Refer(NamedTuple):
    """An incoming REFER, checked: its target, its Referred-By (copy it into the request the
    REFER triggers, RFC 3892), its CSeq number (the NOTIFYs' ``id``) and whether the REFERer
    wants NOTIFYs (False only for ``Refer-Sub: false``, RFC 4488)."""

    target: ReferTarget
    referred_by: Address | None
    cseq: int
    subscription: bool


def parse_refer(request: Request) -> Refer:
    """Check and read a REFER request. ``ParseError`` (answer 400) unless it has exactly one
    Refer-To (RFC 3515 §2.4.1) and at most one well-formed Referred-By and Refer-Sub."""
    if request.method != "REFER":
        raise ValueError(f"not a REFER: {request.method}")
    headers = request.headers
    refer_to = headers.get_all("Refer-To")
    if len(refer_to) != 1:
        raise ParseError("a REFER needs exactly one Refer-To" if len(refer_to) > 1
                         else "REFER without Refer-To")
    target = parse_refer_to(refer_to[0])
    by_lines = headers.get_all("Referred-By")
    if len(by_lines) > 1:
        raise ParseError("more than one Referred-By")
    referred_by = parse_referred_by(by_lines[0]) if by_lines else None
    subscription = True
    sub_lines = headers.get_all("Refer-Sub")
    if len(sub_lines) > 1:
        raise ParseError("more than one Refer-Sub")
    if sub_lines:
        flag = sub_lines[0].partition(";")[0].strip(WS).lower()
        if flag not in ("true", "false"):
            raise ParseError("Refer-Sub must be true or false", data=sub_lines[0])
        subscription = flag == "true"
    return Refer(target, referred_by, request.cseq.seq, subscription)


# NOTIFY bodies and headers ---------------------------------------------------------------------


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """A message/sipfrag body holding a status line only (RFC 3515 §2.4.5), e.g.
    ``b"SIP/2.0 200 OK\\r\\n"``; the reason defaults to the standard phrase."""
    if not 100 <= status <= 699:
        raise ValueError(f"status must be 100..699, not {status}")
    phrase = reason_phrase(status) if reason is None else reason
    if _CONTROL.search(phrase.replace("\t", " ")) is not None:
        raise ValueError("control character in reason phrase")
    return f"SIP/2.0 {status} {phrase}\r\n".encode()


def parse_sipfrag(body: bytes) -> int:
    """The status code of a message/sipfrag body's status line (what a REFER's NOTIFY reports);
    headers after it are ignored. ``ParseError`` unless it starts with a SIP/2.0 status line."""
    data = body.lstrip(b"\r\n")
    end = data.find(b"\n", 0, MAX_STATUS_LINE + 2)
    if end < 0:
        if len(data) > MAX_STATUS_LINE:
            raise ParseError("sipfrag status line too long", data=data)
        end = len(data)
    line = data[:end].removesuffix(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("sipfrag status line is not UTF-8", data=line) from None
    m = _STATUS_LINE.fullmatch(text)
    if m is None:
        raise ParseError("sipfrag does not start with a SIP/2.0 status line", data=line)
    return int(m.group(1))


def notify_headers(cseq_of_refer: int, state: Literal["active", "terminated"], *,
                   expires: int = 60, reason: str = "noresource",
                   with_id: bool = True) -> list[tuple[str, str]]:
    """Event, Subscription-State and Content-Type of a NOTIFY reporting on a REFER.

    ``Event: refer;id=<CSeq of the REFER>`` tells which REFER it reports on; the id is required
    from the second REFER of a dialog and allowed for the first (RFC 3515 §2.4.6), so it is
    always sent unless ``with_id`` is False. ``active`` carries ``expires``, ``terminated`` the
    ``reason`` (``noresource`` once the final status is reported, §2.4.7).
    """
    if not 0 <= cseq_of_refer <= 2**32 - 1:
        raise ValueError(f"bad CSeq number {cseq_of_refer}")
    if state == "active":
        if expires < 0:
            raise ValueError("expires must not be negative")
        sub_state = f"active;expires={expires}"
    elif state == "terminated":
        if not TOKEN_RE.fullmatch(reason):
            raise ValueError(f"reason {reason!r} is not a token")
        sub_state = f"terminated;reason={reason}"
    else:
        raise ValueError(f"state must be 'active' or 'terminated', not {state!r}")
    event = f"refer;id={cseq_of_refer}" if with_id else "refer"
    return [("Event", event), ("Subscription-State", sub_state), ("Content-Type", SIPFRAG_TYPE)]


class ReferNotify(NamedTuple):
    """A NOTIFY about a REFER we sent: the ``id`` of the REFER (None if the Event has none),
    the status its sipfrag reports, and whether the subscription is over."""

    id: int | None
    status: int
    terminated: bool


def parse_refer_notify(request: Request) -> ReferNotify:
    """Read a NOTIFY for the ``refer`` event package (RFC 3515 §2.4.4). ``ParseError`` with
    status hint 489 if the event is not ``refer``, 415 if the body is not message/sipfrag, 400
    for anything malformed."""
    if request.method != "NOTIFY":
        raise ValueError(f"not a NOTIFY: {request.method}")
    event = request.headers.get("Event")
    if event is None:
        raise ParseError("NOTIFY without Event", status_hint=489)
    package, semi, rest = event.partition(";")
    if package.strip(WS).lower() != "refer":
        raise ParseError("not a refer event", status_hint=489, data=event)
    params = parse_params(semi + rest, "Event") if semi else {}
    event_id: int | None = None
    raw_id = params.get("id")
    if raw_id is not None:
        if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 10:
            raise ParseError("bad id in Event", data=event)
        event_id = int(raw_id)
    state_value = request.headers.get("Subscription-State")
    if state_value is None:
        raise ParseError("NOTIFY without Subscription-State")
    sub_state = state_value.partition(";")[0].strip(WS).lower()
    if TOKEN_RE.fullmatch(sub_state) is None:
        raise ParseError("bad Subscription-State", data=state_value)
    if request.content_type != "message/sipfrag":
        raise ParseError("refer NOTIFY body is not message/sipfrag", status_hint=415,
                         data=request.content_type or "")
    return ReferNotify(event_id, parse_sipfrag(request.body), sub_state == "terminated")
