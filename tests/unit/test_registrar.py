"""Registrar decision (RFC 3261 §10.3): expiry, removal, ordering, limits, the 200's Contact list."""

from __future__ import annotations

import dataclasses

import pytest

from pbx.sip.location import Binding
from pbx.sip.message import Request, parse_message
from pbx.sip.peer import Peer
from pbx.sip.registrar import (
    RegisterResult,
    RegistrarPolicy,
    Rejection,
    aor_for,
    handle_register,
    lookup_targets,
)

AOR = "sip:1001@pbx.local"
SOURCE = Peer("udp", "10.0.0.1", 5062)
POLICY = RegistrarPolicy(min_expires=60, max_expires=7200, default_expires=3600, max_contacts=3)
T0 = 1_700_000_000.0


def register(*contacts: str, call_id: str = "reg-1", cseq: int = 1, expires: str | None = None,
             to: str = "<sip:1001@pbx.local>", extra: tuple[str, ...] = ()) -> Request:
    lines = [
        "REGISTER sip:pbx.local SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK" + f"{call_id}-{cseq}",
        "Max-Forwards: 70",
        "From: <sip:1001@pbx.local>;tag=f1",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *(f"Contact: {c}" for c in contacts),
        *([f"Expires: {expires}"] if expires is not None else []),
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def run(req: Request, current: list[Binding], now: float,
        policy: RegistrarPolicy = POLICY) -> RegisterResult:
    snapshot = [dataclasses.replace(b) for b in current]
    result = handle_register(req, AOR, current, SOURCE, now, policy)
    assert current == snapshot  # the input list is never mutated
    if result.status != 200:
        assert result.bindings == current and not result.changed
    else:
        contacts = [v for n, v in result.response_headers if n == "Contact"]
        assert len(contacts) == len(result.bindings)
        assert all(b.expires_at > now for b in result.bindings)
    return result


def contact_lines(result: RegisterResult) -> list[str]:
    return [v for n, v in result.response_headers if n == "Contact"]


def binding(contact: str, expires_at: float, *, q: float = 1.0, call_id: str = "reg-1",
            cseq: int = 1) -> Binding:
    return Binding(AOR, contact, expires_at, q, call_id, cseq, str(SOURCE), None, None)


# Adding, expiry, the 200 ------------------------------------------------------------------------


def test_first_registration_stores_binding_and_lists_it() -> None:
    now = T0
    r = run(register("<sip:1001@10.0.0.1:5062>", expires="600"), [], now)
    assert (r.status, r.reason, r.changed) == (200, "OK", True)
    [b] = r.bindings
    assert b == Binding(AOR, "sip:1001@10.0.0.1:5062", now + 600, 1.0, "reg-1", 1,
                        "udp:10.0.0.1:5062", None, None, ())
    assert contact_lines(r) == ["<sip:1001@10.0.0.1:5062>;expires=600"]
    assert ("Date", "Tue, 14 Nov 2023 22:13:20 GMT") in r.response_headers


def test_expiry_from_contact_param_then_header_then_default() -> None:
    now = T0
    req = register("<sip:a@10.0.0.1>;expires=120", "<sip:b@10.0.0.1>", expires="300")
    r = run(req, [], now)
    assert [b.expires_at - now for b in r.bindings] == [120, 300]
    r = run(register("<sip:c@10.0.0.1>"), [], now)
    assert r.bindings[0].expires_at == now + 3600


def test_expiry_above_max_is_clamped() -> None:
    now = T0
    r = run(register("<sip:a@10.0.0.1>;expires=100000"), [], now)
    assert r.bindings[0].expires_at == now + 7200
    assert contact_lines(r) == ["<sip:a@10.0.0.1>;expires=7200"]
    r = run(register("<sip:a@10.0.0.1>", expires="9999999999"), [], now)  # > 2**32-1
    assert r.bindings[0].expires_at == now + 7200


def test_malformed_expires_param_counts_as_3600() -> None:
    now = T0
    r = run(register('<sip:a@10.0.0.1>;expires="Thu, 01 Dec 2094 16:00:00 GMT"'), [], now)
    assert r.status == 200 and r.bindings[0].expires_at == now + 3600


def test_interval_too_brief_is_423_with_min_expires() -> None:
    now = T0
    current = [binding("sip:old@10.0.0.9", now + 100)]
    r = run(register("<sip:a@10.0.0.1>;expires=59", "<sip:b@10.0.0.1>"), current, now)
    assert (r.status, r.reason) == (423, "Interval Too Brief")
    assert r.response_headers == [("Min-Expires", "60")]
    r = run(register("<sip:a@10.0.0.1>", expires="1"), [], now)
    assert r.status == 423
    assert run(register("<sip:a@10.0.0.1>;expires=60"), [], now).status == 200


def test_423_only_below_one_hour() -> None:
    """§10.3: reject only if the interval is also "smaller than one hour"; never lengthen."""
    now = T0
    policy = RegistrarPolicy(min_expires=7200, max_expires=86400, default_expires=7200)
    assert run(register("<sip:a@10.0.0.1>;expires=3599"), [], now, policy).status == 423
    r = run(register("<sip:a@10.0.0.1>;expires=3600"), [], now, policy)
    assert r.status == 200 and r.bindings[0].expires_at == now + 3600


def test_200_lists_every_binding_with_remaining_time() -> None:
    now = T0
    current = [binding("sip:phone@10.0.0.2", now + 1000.5, q=0.5, call_id="other")]
    r = run(register("<sip:soft@10.0.0.1>", expires="600"), current, now)
    assert contact_lines(r) == [
        "<sip:phone@10.0.0.2>;expires=1001;q=0.5",
        "<sip:soft@10.0.0.1>;expires=600",
    ]
    now += 599.9  # almost expired: still listed, never as expires=0
    r = run(register(), r.bindings, now)
    assert contact_lines(r) == [
        "<sip:phone@10.0.0.2>;expires=401;q=0.5",
        "<sip:soft@10.0.0.1>;expires=1",
    ]


# Queries and expired bindings --------------------------------------------------------------------


def test_register_without_contact_is_a_query() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 300), binding("sip:b@10.0.0.1", now + 600)]
    r = run(register(call_id="someone-else", cseq=1), current, now)
    assert r.status == 200 and r.bindings == current and not r.changed
    assert contact_lines(r) == ["<sip:a@10.0.0.1>;expires=300", "<sip:b@10.0.0.1>;expires=600"]


def test_query_with_stale_call_id_and_cseq_is_still_answered() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 300, cseq=50)]
    assert run(register(cseq=3), current, now).status == 200


def test_expired_bindings_are_dropped() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now), binding("sip:b@10.0.0.1", now + 1)]
    r = run(register(), current, now)
    assert [b.contact for b in r.bindings] == ["sip:b@10.0.0.1"]
    assert r.changed  # worth saving: the expired one is gone
    now += 1
    r = run(register(), r.bindings, now)
    assert r.bindings == [] and contact_lines(r) == []


def test_expired_binding_does_not_block_a_lower_cseq() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now - 1, cseq=9)]
    r = run(register("<sip:a@10.0.0.1>", cseq=2), current, now)
    assert r.status == 200 and r.bindings[0].cseq == 2


# Refresh, replace, remove ------------------------------------------------------------------------


def test_refresh_same_call_id_higher_cseq_updates_in_place() -> None:
    now = T0
    r = run(register("<sip:a@10.0.0.1>", cseq=1, expires="600"), [], now)
    now += 300
    r = run(register("<sip:a@10.0.0.1>", cseq=2, expires="600"), r.bindings, now)
    [b] = r.bindings
    assert (b.cseq, b.expires_at) == (2, now + 600) and r.changed


@pytest.mark.parametrize("cseq", [4, 5])
def test_same_call_id_with_cseq_not_higher_aborts_the_request(cseq: int) -> None:
    """§10.3 step 7: "If not, the update MUST be aborted and the request fails"."""
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 600, cseq=5)]
    r = run(register("<sip:a@10.0.0.1>", "<sip:new@10.0.0.1>", cseq=cseq), current, now)
    assert (r.status, r.reason) == (400, "Out-of-Order CSeq")
    assert r.bindings == current  # the new contact was not added either
    r = run(register("<sip:a@10.0.0.1>;expires=0", cseq=cseq), current, now)
    assert r.status == 400 and r.bindings == current


def test_cseq_only_checked_against_the_matching_binding() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 600, cseq=10)]
    r = run(register("<sip:b@10.0.0.1>", cseq=2), current, now)
    assert r.status == 200 and len(r.bindings) == 2


def test_different_call_id_replaces_binding_whatever_the_cseq() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 600, call_id="old", cseq=900)]
    r = run(register("<sip:a@10.0.0.1>;q=0.3", call_id="new", cseq=1), current, now)
    [b] = r.bindings
    assert (b.call_id, b.cseq, b.q, b.expires_at) == ("new", 1, 0.3, now + 3600)


def test_expires_zero_removes_only_that_contact() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 600), binding("sip:b@10.0.0.1", now + 600)]
    r = run(register("<sip:a@10.0.0.1>;expires=0", cseq=2), current, now)
    assert [b.contact for b in r.bindings] == ["sip:b@10.0.0.1"] and r.changed
    r = run(register("<sip:b@10.0.0.1>", expires="0", call_id="x"), r.bindings, now)
    assert r.bindings == [] and contact_lines(r) == []


def test_removing_an_unknown_contact_is_a_no_op() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 600)]
    r = run(register("<sip:zzz@10.0.0.1>;expires=0", cseq=2), current, now)
    assert r.status == 200 and r.bindings == current and not r.changed


def test_expires_zero_is_never_too_brief() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 600)]
    r = run(register("<sip:a@10.0.0.1>", expires="0", cseq=2), current, now)
    assert r.status == 200 and r.bindings == []


def test_contacts_compared_by_uri_equivalence() -> None:
    """§19.1.4: host case and unknown parameters on one side only do not make a new binding."""
    now = T0
    current = [binding("sip:a@Phone.Example.com:5062;transport=tcp", now + 600, call_id="x")]
    r = run(register("<sip:a@phone.example.com:5062;transport=TCP;foo=1>"), current, now)
    assert len(r.bindings) == 1
    assert r.bindings[0].contact == "sip:a@phone.example.com:5062;transport=TCP;foo=1"
    # a different port, transport or user is a different contact
    for other in ("<sip:a@phone.example.com:5063;transport=tcp>",
                  "<sip:a@phone.example.com:5062>", "<sip:A@phone.example.com:5062;transport=tcp>"):
        r2 = run(register(other), r.bindings, now)
        assert len(r2.bindings) == 2, other


def test_contact_matching_several_bindings_replaces_them_all() -> None:
    """§19.1.4 is not transitive: ;foo=1 and ;foo=2 differ, but the bare URI matches both."""
    now = T0
    r = run(register("<sip:a@10.0.0.1;foo=1>", call_id="x"), [], now)
    r = run(register("<sip:a@10.0.0.1;foo=2>", call_id="y"), r.bindings, now)
    assert len(r.bindings) == 2
    r = run(register("<sip:a@10.0.0.1>", call_id="z"), r.bindings, now)
    assert [b.contact for b in r.bindings] == ["sip:a@10.0.0.1"]
    # and the CSeq rule applies to each of them
    current = [binding("sip:a@10.0.0.1;foo=1", now + 60, call_id="x", cseq=1),
               binding("sip:a@10.0.0.1;foo=2", now + 60, call_id="z", cseq=9)]
    assert run(register("<sip:a@10.0.0.1>", call_id="z", cseq=3), current, now).status == 400


def test_updated_binding_moves_to_the_end() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 600, call_id="x"),
               binding("sip:b@10.0.0.1", now + 600, call_id="y")]
    r = run(register("<sip:a@10.0.0.1>"), current, now)
    assert [b.contact for b in r.bindings] == ["sip:b@10.0.0.1", "sip:a@10.0.0.1"]


# Contact: * --------------------------------------------------------------------------------------


def test_star_with_expires_zero_removes_everything() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 600, call_id="x", cseq=7),
               binding("sip:b@10.0.0.1", now + 600, call_id="reg-1", cseq=1)]
    r = run(register("*", expires="0", cseq=2), current, now)
    assert (r.status, r.bindings, r.changed) == (200, [], True)
    assert contact_lines(r) == []


@pytest.mark.parametrize("contacts, expires", [
    (("*", "<sip:a@10.0.0.1>"), "0"),
    (("*, <sip:a@10.0.0.1>",), "0"),
    (("*", "*"), "0"),
])
def test_star_with_other_contacts_is_400(contacts: tuple[str, ...], expires: str) -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 600)]
    r = run(register(*contacts, expires=expires, cseq=2), current, now)
    assert (r.status, r.reason) == (400, "Wildcard Contact Must Be Alone")
    assert r.bindings == current


@pytest.mark.parametrize("expires", [None, "3600", "1"])
def test_star_without_expires_zero_is_400(expires: str | None) -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 600)]
    r = run(register("*", expires=expires, cseq=2), current, now)
    assert (r.status, r.reason) == (400, "Wildcard Contact Needs Expires: 0")


def test_star_respects_call_id_and_cseq() -> None:
    now = T0
    current = [binding("sip:a@10.0.0.1", now + 600, call_id="x", cseq=1),
               binding("sip:b@10.0.0.1", now + 600, call_id="reg-1", cseq=5)]
    r = run(register("*", expires="0", cseq=5), current, now)
    assert r.status == 400 and r.bindings == current
    assert run(register("*", expires="0", cseq=6), current, now).bindings == []


# q-values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("q, value", [("0", 0.0), ("0.", 0.0), ("0.5", 0.5), ("0.125", 0.125),
                                      ("1", 1.0), ("1.000", 1.0)])
def test_valid_q(q: str, value: float) -> None:
    r = run(register(f"<sip:a@10.0.0.1>;q={q}"), [], T0)
    assert r.status == 200 and r.bindings[0].q == value


@pytest.mark.parametrize("q", ["1.5", "2", "0.1234", "-0.1", "1.001", ".5", "abc", '"0.5"'])
def test_bad_q_is_400(q: str) -> None:
    r = run(register(f"<sip:a@10.0.0.1>;q={q}"), [], T0)
    assert (r.status, r.reason) == (400, "Bad q-value")


def test_q_without_value_is_400() -> None:
    assert run(register("<sip:a@10.0.0.1>;q"), [], T0).status == 400


def test_missing_q_defaults_to_one_and_is_not_echoed() -> None:
    r = run(register("<sip:a@10.0.0.1>;expires=60", "<sip:b@10.0.0.1>;q=0.250;expires=60"), [], T0)
    assert [b.q for b in r.bindings] == [1.0, 0.25]
    assert contact_lines(r) == ["<sip:a@10.0.0.1>;expires=60",
                                "<sip:b@10.0.0.1>;expires=60;q=0.25"]


# Other rejections --------------------------------------------------------------------------------


@pytest.mark.parametrize("contact", ["<tel:+15551234567>", "<mailto:a@example.com>"])
def test_non_sip_contact_is_400(contact: str) -> None:
    r = run(register(contact), [], T0)
    assert (r.status, r.reason) == (400, "Contact Must Be a SIP or SIPS URI")


def test_sips_contact_is_accepted() -> None:
    r = run(register("<sips:a@10.0.0.1>"), [], T0)
    assert r.status == 200 and r.bindings[0].contact == "sips:a@10.0.0.1"


def test_duplicate_contact_in_one_request_is_400() -> None:
    r = run(register("<sip:a@10.0.0.1>;expires=0", "<sip:a@10.0.0.1;foo=bar>;expires=60"), [], T0)
    assert (r.status, r.reason) == (400, "Duplicate Contact")


def test_too_many_contacts_is_403_and_nothing_changes() -> None:
    now = T0
    current = [binding(f"sip:{u}@10.0.0.1", now + 600, call_id=u) for u in "abc"]
    r = run(register("<sip:d@10.0.0.1>"), current, now)
    assert (r.status, r.reason) == (403, "Too Many Registrations") and r.bindings == current
    r = run(register(*(f"<sip:{u}@10.0.0.2>" for u in "wxyz")), [], now)
    assert r.status == 403
    # at the limit, refreshing, replacing one by another and removing still work
    assert run(register("<sip:a@10.0.0.1>"), current, now).status == 200
    r = run(register("<sip:a@10.0.0.1>;expires=0", "<sip:d@10.0.0.1>"), current, now)
    assert r.status == 200 and [b.contact[4] for b in r.bindings] == ["b", "c", "d"]
    # expired bindings do not count
    current[0] = binding("sip:a@10.0.0.1", now, call_id="a")
    assert run(register("<sip:d@10.0.0.1>"), current, now).status == 200


def test_over_the_limit_after_a_policy_change_can_still_shrink() -> None:
    now = T0
    current = [binding(f"sip:{u}@10.0.0.1", now + 600, call_id=u) for u in "abcde"]
    r = run(register("<sip:a@10.0.0.1>;expires=0"), current, now)
    assert r.status == 200 and len(r.bindings) == 4
    assert run(register("<sip:f@10.0.0.1>"), r.bindings, now).status == 403


def test_rejection_table() -> None:
    assert {r.status for r in Rejection} == {400, 403, 423}
    assert Rejection.INTERVAL_TOO_BRIEF.status == 423


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        RegistrarPolicy(min_expires=100, default_expires=50)
    with pytest.raises(ValueError):
        RegistrarPolicy(max_contacts=0)
    with pytest.raises(ValueError):
        RegistrarPolicy(min_expires=10, max_expires=5, default_expires=7)


# RFC 5626 and RFC 3327 ---------------------------------------------------------------------------


INSTANCE = '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'


def test_instance_and_reg_id_are_stored() -> None:
    r = run(register(f"<sip:line1@192.0.2.2;transport=tcp>;reg-id=1;+sip.instance={INSTANCE}"),
            [], T0)
    [b] = r.bindings
    assert b.instance == "urn:uuid:00000000-0000-1000-8000-000A95A0E128" and b.reg_id == 1
    assert contact_lines(r) == [
        f"<sip:line1@192.0.2.2;transport=tcp>;expires=3600;+sip.instance={INSTANCE}"]


def test_reg_id_without_instance_is_ignored() -> None:
    r = run(register("<sip:a@10.0.0.1>;reg-id=1"), [], T0)
    assert (r.bindings[0].instance, r.bindings[0].reg_id) == (None, None)


@pytest.mark.parametrize("reg_id", ["0", "x", "2147483648"])
def test_bad_reg_id_is_400(reg_id: str) -> None:
    r = run(register(f"<sip:a@10.0.0.1>;+sip.instance={INSTANCE};reg-id={reg_id}"), [], T0)
    assert (r.status, r.reason) == (400, "Bad reg-id")


def test_path_is_stored_and_echoed_when_supported() -> None:
    now = T0
    path = ("Path: <sip:edge1.example.com;lr>", "Path: <sip:edge2.example.com;lr>")
    r = run(register("<sip:a@10.0.0.1>", extra=path), [], now)
    assert r.bindings[0].path == ("<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>")
    assert not [h for h in r.response_headers if h[0] == "Path"]
    r = run(register("<sip:b@10.0.0.1>", extra=(*path, "Supported: outbound, path")), [], now)
    assert [v for n, v in r.response_headers if n == "Path"] == [
        "<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]


def test_source_is_recorded() -> None:
    src = Peer("tcp", "2001:db8::1", 40000)
    r = handle_register(register("<sip:a@10.0.0.1>"), AOR, [], src, T0, POLICY)
    assert r.bindings[0].source == "tcp:[2001:db8::1]:40000"


# aor_for and lookup_targets ----------------------------------------------------------------------


@pytest.mark.parametrize("to, domain, expected", [
    ("<sip:1001@pbx.local>", "pbx.local", "sip:1001@pbx.local"),
    ("\"Bob\" <sip:1001@PBX.Local:5070;user=phone>;tag=x", "pbx.local", "sip:1001@pbx.local"),
    ("<sips:1001@pbx.local>", "PBX.LOCAL", "sip:1001@pbx.local"),
    ("<sip:al%69ce@pbx.local>", "pbx.local", "sip:alice@pbx.local"),
    ("<sip:1001@other.example>", "pbx.local", None),
    ("<sip:pbx.local>", "pbx.local", None),
    ("<tel:+15551234567>", "pbx.local", None),
])
def test_aor_for(to: str, domain: str, expected: str | None) -> None:
    assert aor_for(register(to=to), domain) == expected


def test_lookup_targets_orders_by_q_then_recency() -> None:
    now = T0
    bs = [binding("sip:old@h", now + 10, q=0.5), binding("sip:gone@h", now, q=1.0),
          binding("sip:top@h", now + 10, q=0.9), binding("sip:new@h", now + 10, q=0.5)]
    assert [b.contact for b in lookup_targets(bs, now)] == ["sip:top@h", "sip:new@h", "sip:old@h"]
    assert lookup_targets(bs, now + 10) == []


def test_lookup_targets_after_registrations() -> None:
    now = T0
    r = run(register("<sip:a@10.0.0.1>", call_id="x"), [], now)
    r = run(register("<sip:b@10.0.0.1>", call_id="y"), r.bindings, now + 1)
    assert [b.contact for b in lookup_targets(r.bindings, now + 2)] == [
        "sip:b@10.0.0.1", "sip:a@10.0.0.1"]
