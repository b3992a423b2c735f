"""Registrar invariants over random REGISTER sequences (contacts, expiry, q, Call-ID, CSeq, ``*``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hypothesis import event, given, settings
from hypothesis import strategies as st

from pbx.sip.address import parse_address
from pbx.sip.location import Binding
from pbx.sip.message import Request, parse_message
from pbx.sip.peer import Peer
from pbx.sip.registrar import RegistrarPolicy, handle_register
from pbx.sip.uri import SipUri, parse_uri

AOR = "sip:1001@pbx.local"
POLICY = RegistrarPolicy(min_expires=60, max_expires=7200, default_expires=3600, max_contacts=3)

# Equivalence classes overlap on purpose: ";foo=1" and ";foo=2" each match the bare URI but not
# each other (§19.1.4 is not transitive), host case is ignored, port/scheme/user/transport count.
URIS = [
    "sip:a@h.example", "sip:a@H.Example", "sip:a@h.example;foo=1", "sip:a@h.example;foo=2",
    "sip:a@h.example;transport=tcp", "sip:a@h.example:5070", "sips:a@h.example",
    "sip:b@h.example", "sip:c@h.example", "sip:d@h.example",
]
EXPIRES = [None, "0", "0", "30", "60", "600", "3600", "100000", '"bad"']
HEADER_EXPIRES = [None, "0", "30", "600"]
QS = [None] * 8 + ["0", "0.5", "1", "0.123", "1.5"]


@dataclass
class Contact:
    uri: str
    expires: str | None
    q: str | None

    def __str__(self) -> str:
        text = f"<{self.uri}>"
        if self.expires is not None:
            text += f";expires={self.expires}"
        if self.q is not None:
            text += f";q={self.q}"
        return text


@dataclass
class Step:
    advance: float
    contacts: list[Contact] | None  # None: Contact: *
    expires: str | None
    call_id: str
    cseq: int


contacts_st = st.builds(Contact, st.sampled_from(URIS), st.sampled_from(EXPIRES),
                        st.sampled_from(QS))


@st.composite
def step_st(draw: st.DrawFn) -> Step:
    """Mostly well-formed registrations, with every kind of mistake now and then."""
    star = draw(st.integers(0, 9)) == 0
    contacts = None if star else draw(st.lists(contacts_st, max_size=3))
    headers = ["0", "0", "0", None, "600"] if star else HEADER_EXPIRES
    return Step(
        advance=draw(st.sampled_from([0.0, 0.5, 1.0, 59.0, 600.0, 4000.0])),
        contacts=contacts,
        expires=draw(st.sampled_from(headers)),
        call_id=draw(st.sampled_from(["c1", "c2", "c3"])),
        cseq=draw(st.integers(1, 6)),
    )


def build(step: Step) -> Request:
    lines = [
        "REGISTER sip:pbx.local SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKx",
        "From: <sip:1001@pbx.local>;tag=f",
        "To: <sip:1001@pbx.local>",
        f"Call-ID: {step.call_id}",
        f"CSeq: {step.cseq} REGISTER",
    ]
    if step.contacts is None:
        lines.append("Contact: *")
    else:
        lines.extend(f"Contact: {c}" for c in step.contacts)
    if step.expires is not None:
        lines.append(f"Expires: {step.expires}")
    msg = parse_message(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode())
    assert isinstance(msg, Request)
    return msg


def uri(text: str) -> SipUri:
    u = parse_uri(text)
    assert isinstance(u, SipUri)
    return u


def requested(c: Contact, header: str | None) -> int:
    """The interval the request asks for (the registrar's rules, restated)."""
    value = c.expires if c.expires is not None else header
    if value is None:
        return POLICY.default_expires
    return int(value) if value.isdigit() else 3600


def expected_status(step: Step, live: list[Binding]) -> int:
    """What the request deserves, restated from RFC 3261 §10.3 and the documented policy."""
    def out_of_order(b: Binding) -> bool:
        return b.call_id == step.call_id and step.cseq <= b.cseq

    if step.contacts is None:
        if step.expires != "0":
            return 400
        return 400 if any(out_of_order(b) for b in live) else 200
    if not step.contacts:
        return 200
    if any(c.q == "1.5" for c in step.contacts):
        return 400
    named = [uri(c.uri) for c in step.contacts]
    if any(a.matches(b) for i, a in enumerate(named) for b in named[i + 1 :]):
        return 400
    asks = [requested(c, step.expires) for c in step.contacts]
    if any(0 < ask < POLICY.min_expires for ask in asks):
        return 423
    hit = [b for b in live if any(n.matches(uri(b.contact)) for n in named)]
    if any(out_of_order(b) for b in hit):
        return 400
    size = len(live) - len(hit) + sum(1 for ask in asks if ask)
    return 403 if size > POLICY.max_contacts and size > len(live) else 200


@settings(max_examples=400, deadline=None)
@given(st.lists(step_st(), min_size=1, max_size=30))
def test_register_sequences_keep_invariants(steps: list[Step]) -> None:
    now = 1_000_000.0
    current: list[Binding] = []
    source = Peer("udp", "10.0.0.1", 5062)
    for step in steps:
        now += step.advance
        req = build(step)
        before = [dataclasses.replace(b) for b in current]
        live = [b for b in current if b.expires_at > now]
        result = handle_register(req, AOR, current, source, now, POLICY)
        assert current == before  # input never mutated
        assert result.status == expected_status(step, live)
        event(f"{result.status} {result.reason}; {len(result.bindings)} bindings")

        if result.status != 200:
            # a rejected request leaves the set exactly as it was
            assert result.bindings == current and not result.changed
            if result.status == 423:
                assert result.response_headers == [("Min-Expires", "60")]
            continue

        new = result.bindings
        # never an expired entry, never more than the limit
        assert all(b.expires_at > now for b in new)
        assert len(new) <= POLICY.max_contacts
        # no two bindings for the same contact
        for i, first in enumerate(new):
            for second in new[i + 1 :]:
                assert not uri(first.contact).matches(uri(second.contact))
        # the 200 lists exactly the stored set, each with its remaining time
        lines = [parse_address(v) for n, v in result.response_headers if n == "Contact"]
        assert [str(line.uri) for line in lines] == [b.contact for b in new]
        for line, b in zip(lines, new, strict=True):
            seconds = int(line.params["expires"] or "")
            assert 1 <= seconds <= POLICY.max_expires
            assert 0 <= seconds - (b.expires_at - now) < 1 + 1e-6
        assert result.changed == (new != current)
        current = new

        if step.contacts is None:
            assert new == []  # "*" with Expires: 0 removes everything
        elif not step.contacts:
            assert new == live  # a query changes nothing but dropping the expired
        else:
            for c in step.contacts:
                ask = requested(c, step.expires)
                matching = [b for b in new if uri(c.uri).matches(uri(b.contact))]
                if ask == 0:
                    assert matching == []  # removal removes
                else:
                    [b] = matching
                    assert (b.call_id, b.cseq) == (step.call_id, step.cseq)
                    assert b.expires_at == now + min(ask, POLICY.max_expires)
            # bindings the request did not name are kept as they were, in order
            named = [uri(c.uri) for c in step.contacts]
            untouched = [b for b in live if not any(n.matches(uri(b.contact)) for n in named)]
            assert [b for b in new if b in untouched] == untouched
