"""The admin HTTP API over a real EventBus, a real CdrStore (SQLite in tmp_path) and real
metrics; only call control is faked (``FakePbx`` keeps a dict of calls)."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import io
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from pbx import admin
from pbx.admin import (
    API_PREFIX,
    MAX_BODY,
    AdminBackend,
    admin_app,
    admin_port,
    openapi_document,
    start_admin,
)
from pbx.cdr import CSV_COLUMNS, CallRecord, CdrStore, CdrWriter, LegRecord, records_from_csv
from pbx.config import AdminConfig
from pbx.events import (
    CallAnswered,
    CallEnded,
    CallRinging,
    CallStarted,
    DigitsReceived,
    Event,
    EventBus,
    HangupSide,
    RegistrationChanged,
    RuleMatched,
)
from pbx.metrics import CONTENT_TYPE, CallMetrics, Registry

T = TypeVar("T")
TOKENS: dict[str, str | None] = {"root-token": None, "acme-token": "acme",
                                 "beta-token": "beta"}
ROOT = {"Authorization": "Bearer root-token"}
ACME = {"Authorization": "Bearer acme-token"}
BETA = {"Authorization": "Bearer beta-token"}
P = API_PREFIX


class FakePbx:
    """An ``AdminBackend``: real bus, records and metrics; calls are entries in a dict."""

    def __init__(self, cdr_path: Path | str) -> None:
        self.bus = EventBus()
        self.cdr = CdrStore(cdr_path)
        self.bus.subscribe(CdrWriter(self.cdr))
        self.metrics = Registry()
        CallMetrics(self.metrics, self.bus)
        self.calls: dict[str, dict[str, Any]] = {}
        self.regs = [{"aor": "sip:1001@acme.test", "contact": "sip:1001@10.0.0.1", "tenant": "acme"},
                     {"aor": "sip:2001@beta.test", "contact": "sip:2001@10.0.0.2", "tenant": "beta"}]
        self.apps = {"ivr", "hotline"}
        self.originated: list[dict[str, Any]] = []
        self.leaky = False        # a buggy backend that ignores the tenant it is asked for
        self.now = 1_800_000_000.0
        self._next = 0

    def _scope(self, items: list[dict[str, Any]], tenant: str | None) -> list[dict[str, Any]]:
        if self.leaky or tenant is None:
            return [dict(i) for i in items]
        return [dict(i) for i in items if i["tenant"] == tenant]

    def active_calls(self, tenant: str | None) -> list[dict[str, Any]]:
        return self._scope(list(self.calls.values()), tenant)

    def registrations(self, tenant: str | None) -> list[dict[str, Any]]:
        return self._scope(self.regs, tenant)

    async def originate(self, *, to: str, caller_id: str | None, app: str | None,
                        data: dict[str, Any], timeout: float, tenant: str | None) -> str:
        self.originated.append({"to": to, "caller_id": caller_id, "app": app, "data": data,
                                "timeout": timeout, "tenant": tenant})
        if app is not None and app not in self.apps:
            raise LookupError(f"unknown app {app!r}")
        if not to.isdigit():
            raise ValueError(f"cannot call {to!r}: digits only")
        self._next += 1
        call_id = f"call-{self._next}"
        owner = tenant or "default"
        self.calls[call_id] = {"call_id": call_id, "tenant": owner, "to": to, "state": "ringing"}
        self.now += 1
        self.bus.publish(CallStarted(call_id=call_id, at=self.now, tenant=owner,
                                     caller=caller_id or "pbx", callee=to, dialed=to,
                                     app=app or "", data=data))
        return call_id

    async def hangup(self, call_id: str, tenant: str | None) -> bool:
        call = self.calls.get(call_id)
        if call is None or (tenant is not None and call["tenant"] != tenant):
            return False
        del self.calls[call_id]
        self.now += 1
        self.bus.publish(CallEnded(call_id=call_id, at=self.now, tenant=call["tenant"],
                                   side=HangupSide.SYSTEM, cause="admin API"))
        return True


Scenario = Callable[[TestClient[web.Request, web.Application], FakePbx], Awaitable[T]]


def run(tmp_path: Path, scenario: Scenario[T], *, tokens: dict[str, str | None] | None = None,
        cdr_path: Path | str | None = None) -> T:
    """Run ``scenario(client, pbx)`` against a fresh app on 127.0.0.1."""

    async def main() -> T:
        pbx = FakePbx(tmp_path / "cdr.sqlite3" if cdr_path is None else cdr_path)
        config = AdminConfig(port=0, tokens=TOKENS if tokens is None else tokens)
        try:
            app = admin_app(pbx, config)
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                return await scenario(client, pbx)
        finally:
            pbx.cdr.close()

    return asyncio.run(main())


def record(call_id: str, start: float, *, tenant: str = "acme", caller: str = "13800138000",
           callee: str = "1001", disposition: str = "answered") -> CallRecord:
    return CallRecord(call_id, tenant=tenant, caller=caller, callee=callee, dialed=callee,
                      start_time=start, answer_time=start + 2, end_time=start + 30,
                      duration=30.0, billable=28, disposition=disposition, path=["ivr:menu"],
                      data={"order": call_id}, seen_time=start + 30,
                      legs=[LegRecord("a", "caller", caller, callee, start_time=start)])


def seed(store: CdrStore) -> list[CallRecord]:
    """Six records over two tenants, one per minute from 2027-01-15T08:00Z."""
    t0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()
    records = [
        record("r1", t0, caller="111"),
        record("r2", t0 + 60, tenant="beta", caller="222"),
        record("r3", t0 + 120, caller="111", disposition="busy"),
        record("r4", t0 + 180, callee="1002", disposition="no answer"),
        record("r5", t0 + 240, tenant="beta", disposition="busy"),
        record("r6", t0 + 300, caller="111"),
    ]
    store.put(*records)
    return records


def as_json(r: CallRecord) -> dict[str, Any]:
    out = dataclasses.asdict(r)
    return {k: out[k] for k in CSV_COLUMNS}


def routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves."""
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        out.add((route.method, info.get("path") or info.get("formatter", "")))
    return out


def test_fake_backend_satisfies_the_protocol(tmp_path: Path) -> None:
    pbx: AdminBackend = FakePbx(tmp_path / "x.sqlite3")   # mypy-style check, and at run time:
    for name in ("bus", "cdr", "metrics", "active_calls", "registrations", "originate", "hangup"):
        assert hasattr(pbx, name)
    pbx.cdr.close()


# Auth ---------------------------------------------------------------------------------------------

def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "some-id", path)


def test_every_route_but_the_document_needs_a_token(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> dict[tuple[str, str], Any]:
        seen = {}
        for method, path in sorted(routes(client.app)):
            for label, headers in (("none", {}), ("wrong", {"Authorization": "Bearer nope"}),
                                   ("basic", {"Authorization": "Basic cm9vdDpyb290"}),
                                   ("empty", {"Authorization": "Bearer "})):
                resp = await client.request(method, _concrete(path), headers=headers)
                seen[(f"{method} {path}", label)] = (
                    resp.status, resp.headers.get("WWW-Authenticate", ""),
                    (await resp.json())["error"] if resp.status == 401 else None)
        return seen

    seen = run(tmp_path, scenario)
    assert len(seen) == 4 * 10
    for (route, label), (status, challenge, error) in seen.items():
        if route == f"GET {P}/openapi.json":
            assert status == 200
            continue
        assert status == 401, (route, label)
        assert challenge.startswith("Bearer"), (route, label)
        if label == "wrong":
            assert 'error="invalid_token"' in challenge
            assert error == "invalid token"
        if label in ("none", "basic", "empty"):
            assert error == "missing bearer token"


def test_right_token_tenant_token_and_no_tokens_at_all(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> list[int]:
        return [(await client.get(f"{P}/calls", headers=h)).status for h in (
            ROOT, ACME, {"Authorization": "bearer   root-token  "},      # scheme any case
            {"Authorization": "Bearer root-toke"}, {"Authorization": "Bearer root-token2"},
            {"Authorization": "Bearer ROOT-TOKEN"})]

    assert run(tmp_path, scenario) == [200, 200, 200, 401, 401, 401]

    async def nobody(client: TestClient[Any, Any], pbx: FakePbx) -> list[int]:
        return [(await client.get(f"{P}/calls", headers=ROOT)).status,
                (await client.get(f"{P}/openapi.json")).status]

    assert run(tmp_path, nobody, tokens={}) == [401, 200]


def test_token_comparison_is_constant_time_over_every_token(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)

    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> list[int]:
        return [(await client.get(f"{P}/calls", headers=h)).status for h in (ROOT, BETA)]

    assert run(tmp_path, scenario) == [200, 200]
    # Each request compared against all three tokens (no early exit), as equal-length digests.
    assert len(calls) == 6
    assert all(len(a) == len(b) == 32 for a, b in calls)


# Calls --------------------------------------------------------------------------------------------

def test_originate_list_and_hang_up(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> None:
        resp = await client.post(f"{P}/calls", headers=ROOT, json={
            "to": " 13800138000 ", "caller_id": "4001", "app": "ivr",
            "data": {"order": 42, "vip": True}, "timeout": 12})
        assert resp.status == 201
        call_id = (await resp.json())["call_id"]
        assert call_id == "call-1"
        assert pbx.originated[-1] == {"to": "13800138000", "caller_id": "4001", "app": "ivr",
                                      "data": {"order": 42, "vip": True}, "timeout": 12.0,
                                      "tenant": None}
        assert isinstance(pbx.originated[-1]["timeout"], float)
        # Defaults: no caller id, no app, empty data, 30 s.
        resp = await client.post(f"{P}/calls", headers=ACME, json={"to": "1002"})
        assert resp.status == 201
        assert pbx.originated[-1] == {"to": "1002", "caller_id": None, "app": None, "data": {},
                                      "timeout": 30.0, "tenant": "acme"}

        resp = await client.get(f"{P}/calls", headers=ROOT)
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        assert resp.headers["Cache-Control"] == "no-store"
        calls = (await resp.json())["calls"]
        assert sorted(c["call_id"] for c in calls) == ["call-1", "call-2"]

        # The originated call went through the bus into the call records.
        rec = await (await client.get(f"{P}/records/call-1", headers=ROOT)).json()
        assert (rec["callee"], rec["disposition"], rec["data"]) == (
            "13800138000", "in progress", {"order": 42, "vip": True})

        resp = await client.delete(f"{P}/calls/call-1", headers=ROOT)
        assert resp.status == 204
        assert "call-1" not in pbx.calls
        resp = await client.delete(f"{P}/calls/call-1", headers=ROOT)
        assert resp.status == 404
        assert (await resp.json()) == {"error": "no active call 'call-1'"}
        rec = await (await client.get(f"{P}/records/call-1", headers=ROOT)).json()
        assert rec["disposition"] != "in progress" and rec["hangup_cause"] == "admin API"

    run(tmp_path, scenario)


def test_tenant_scoping_of_calls_and_registrations(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> None:
        for headers, to in ((ACME, "1"), (ACME, "2"), (BETA, "3"), (ROOT, "4")):
            assert (await client.post(f"{P}/calls", headers=headers, json={"to": to})).status == 201
        by_tenant = {c["call_id"]: c["tenant"] for c in pbx.calls.values()}
        assert by_tenant == {"call-1": "acme", "call-2": "acme", "call-3": "beta",
                             "call-4": "default"}

        async def ids(headers: dict[str, str]) -> list[str]:
            body = await (await client.get(f"{P}/calls", headers=headers)).json()
            return sorted(c["call_id"] for c in body["calls"])

        async def aors(headers: dict[str, str]) -> list[str]:
            body = await (await client.get(f"{P}/registrations", headers=headers)).json()
            return sorted(r["aor"] for r in body["registrations"])

        assert await ids(ACME) == ["call-1", "call-2"]
        assert await ids(BETA) == ["call-3"]
        assert await ids(ROOT) == ["call-1", "call-2", "call-3", "call-4"]
        assert await aors(ACME) == ["sip:1001@acme.test"]
        assert await aors(ROOT) == ["sip:1001@acme.test", "sip:2001@beta.test"]

        # A backend that forgets the tenant still cannot leak through the API.
        pbx.leaky = True
        assert await ids(ACME) == ["call-1", "call-2"]
        assert await aors(BETA) == ["sip:2001@beta.test"]
        pbx.leaky = False

        # Another tenant's call cannot be hung up (it looks like no call at all).
        resp = await client.delete(f"{P}/calls/call-3", headers=ACME)
        assert resp.status == 404
        assert "call-3" in pbx.calls
        assert (await client.delete(f"{P}/calls/call-3", headers=BETA)).status == 204
        assert (await client.delete(f"{P}/calls/call-1", headers=ROOT)).status == 204

    run(tmp_path, scenario)


BAD_BODIES: list[tuple[Any, str, str]] = [
    ({"to": "1", "tenant": "beta"}, "tenant", "unknown field 'tenant'"),
    ({"to": "1", "Timeout": 5}, "Timeout", "unknown field 'Timeout'"),
    ({}, "to", "to: required"),
    ({"to": None}, "to", "to: must be a non-empty string"),
    ({"to": 1001}, "to", "to: expected a string"),
    ({"to": "   "}, "to", "to: must be a non-empty string"),
    ({"to": "1" * 257}, "to", "to: longer than 256 characters"),
    ({"to": "1", "caller_id": 4001}, "caller_id", "caller_id: expected a string"),
    ({"to": "1", "app": ["ivr"]}, "app", "app: expected a string"),
    ({"to": "1", "data": [1, 2]}, "data", "data: expected a JSON object"),
    ({"to": "1", "data": "x=1"}, "data", "data: expected a JSON object"),
    ({"to": "1", "timeout": "5"}, "timeout", "timeout: expected a number of seconds"),
    ({"to": "1", "timeout": True}, "timeout", "timeout: expected a number of seconds"),
    ({"to": "1", "timeout": 0}, "timeout", "timeout: must be more than 0"),
    ({"to": "1", "timeout": -3}, "timeout", "timeout: must be more than 0"),
    ({"to": "1", "timeout": 3601}, "timeout", "timeout: must be more than 0"),
]


@pytest.mark.parametrize(("body", "field", "message"), BAD_BODIES)
def test_originate_validation_names_the_field(tmp_path: Path, body: Any, field: str,
                                              message: str) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> tuple[int, Any]:
        resp = await client.post(f"{P}/calls", headers=ROOT, json=body)
        return resp.status, await resp.json()

    status, answer = run(tmp_path, scenario)
    assert status == 400
    assert answer["field"] == field
    assert answer["error"].startswith(message)


def test_originate_rejects_bodies_that_are_not_a_json_object(tmp_path: Path) -> None:
    json_type = {"Content-Type": "application/json"}

    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> list[tuple[int, str]]:
        out = []
        for headers, data in ((json_type, b"{\"to\": "), (json_type, b"[\"1001\"]"),
                              (json_type, b"{\"to\": \"1\", \"timeout\": NaN}"),
                              (json_type, b"\xff\xfe"), (json_type, b""),
                              ({"Content-Type": "text/plain"}, b"{\"to\": \"1\"}"),
                              ({}, b"to=1001"),
                              (json_type, b"{\"to\": \"1\", \"data\": \"" + b"x" * MAX_BODY
                               + b"\"}")):
            resp = await client.post(f"{P}/calls", headers={**ROOT, **headers}, data=data)
            body = await resp.json()
            assert set(body) <= {"error", "field"}
            out.append((resp.status, body["error"]))
        assert pbx.originated == []
        return out

    answers = run(tmp_path, scenario)
    assert [s for s, _ in answers] == [400, 400, 400, 400, 400, 415, 415, 413]
    assert answers[0][1].startswith("body: not valid JSON")
    assert answers[1][1] == "body: expected a JSON object"
    assert answers[2][1].startswith("body: not valid JSON")
    assert "Traceback" not in "".join(m for _, m in answers)


def test_originate_backend_refusals(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> list[tuple[int, Any]]:
        out = []
        for body in ({"to": "sip:x@y"}, {"to": "1001", "app": "nosuch"}):
            resp = await client.post(f"{P}/calls", headers=ROOT, json=body)
            out.append((resp.status, await resp.json()))
        return out

    bad_to, bad_app = run(tmp_path, scenario)
    assert bad_to == (400, {"error": "cannot call 'sip:x@y': digits only"})
    assert bad_app == (422, {"error": "unknown app 'nosuch'", "field": "app"})


def test_unexpected_backend_errors_are_500_without_a_trace(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    def broken(tenant: str | None) -> list[dict[str, Any]]:
        raise RuntimeError("secret internals")

    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> tuple[int, str]:
        pbx.active_calls = broken  # type: ignore[method-assign]
        resp = await client.get(f"{P}/calls", headers=ROOT)
        return resp.status, await resp.text()

    with caplog.at_level(logging.ERROR, logger="pbx.admin"):
        status, text = run(tmp_path, scenario)
    assert status == 500
    assert json.loads(text) == {"error": "internal error"}
    assert "secret" not in text
    assert any("secret internals" in (r.exc_text or "") for r in caplog.records)


def test_unknown_routes_methods_and_query_parameters(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> list[tuple[int, Any, str]]:
        out = []
        for method, path in (("GET", f"{P}/nope"), ("PUT", f"{P}/calls"),
                             ("GET", f"{P}/calls?x=1"), ("GET", f"{P}/registrations?tenant=a"),
                             ("DELETE", f"{P}/calls/c1?force=1")):
            resp = await client.request(method, path, headers=ROOT)
            out.append((resp.status, await resp.json(), resp.headers.get("Allow", "")))
        return out

    nope, put, calls_q, regs_q, delete_q = run(tmp_path, scenario)
    assert nope[0] == 404 and nope[1] == {"error": "Not Found"}
    assert put[0] == 405 and set(put[2].split(",")) == {"GET", "POST"}
    for status, body, _ in (calls_q, regs_q, delete_q):
        assert status == 400
        assert "this route takes none" in body["error"]
    assert calls_q[1]["field"] == "x"
    assert regs_q[1]["field"] == "tenant"


# Records ------------------------------------------------------------------------------------------

def test_records_query_filters_and_pages(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> None:
        recs = {r.call_id: r for r in seed(pbx.cdr)}

        async def query(qs: str, headers: dict[str, str] = ROOT) -> dict[str, Any]:
            resp = await client.get(f"{P}/records{qs}", headers=headers)
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

        async def ids(qs: str, headers: dict[str, str] = ROOT) -> list[str]:
            return [r["call_id"] for r in (await query(qs, headers))["records"]]

        everything = await query("")
        assert everything["records"] == [as_json(recs[f"r{i}"]) for i in range(1, 7)]
        assert (everything["total"], everything["limit"], everything["offset"]) == (6, 100, 0)
        assert await ids("?caller=111") == ["r1", "r3", "r6"]
        assert await ids("?callee=1002") == ["r4"]
        assert await ids("?dialed=1002") == ["r4"]
        assert await ids("?disposition=busy") == ["r3", "r5"]
        assert await ids("?disposition=no+answer") == ["r4"]
        assert await ids("?since=2027-01-15T08:02:00Z&until=2027-01-15T08:04:00") == ["r3", "r4"]
        assert await ids("?since=2027-01-15T16:03:00%2B08:00") == ["r4", "r5", "r6"]
        assert await ids(f"?since={recs['r5'].start_time}") == ["r5", "r6"]
        assert await ids("?until=2027-01-15") == []
        assert await ids("?tenant=beta") == ["r2", "r5"]
        page = await query("?limit=2&offset=1&caller=111")
        assert [r["call_id"] for r in page["records"]] == ["r3", "r6"]
        assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
        assert await ids("?offset=10") == []

        # A tenant's token: its own records only, whatever it asks.
        assert await ids("", ACME) == ["r1", "r3", "r4", "r6"]
        assert await ids("?tenant=acme&disposition=busy", ACME) == ["r3"]
        assert (await query("", BETA))["total"] == 2
        resp = await client.get(f"{P}/records?tenant=beta", headers=ACME)
        assert resp.status == 403
        assert (await resp.json())["field"] == "tenant"

        # One record.
        resp = await client.get(f"{P}/records/r2", headers=ROOT)
        assert await resp.json() == as_json(recs["r2"])
        assert (await client.get(f"{P}/records/r2", headers=BETA)).status == 200
        for headers in (ACME, ROOT):
            call_id = "r2" if headers is ACME else "nosuch"
            resp = await client.get(f"{P}/records/{call_id}", headers=headers)
            assert resp.status == 404
            assert await resp.json() == {"error": f"no call record {call_id!r}"}

    run(tmp_path, scenario)


BAD_QUERIES = [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"),
    ("offset=-1", "offset"), ("since=yesterday", "since"), ("until=nan", "until"),
    ("disposition=lost", "disposition"), ("callee=1&callee=2", "callee"),
    ("order=desc", "order"),
]


@pytest.mark.parametrize(("qs", "field"), BAD_QUERIES)
def test_records_query_validation(tmp_path: Path, qs: str, field: str) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> list[tuple[int, Any]]:
        out = []
        for path in ("records", "records.csv"):
            if path == "records.csv" and field in ("limit", "offset"):
                continue
            resp = await client.get(f"{P}/{path}?{qs}", headers=ROOT)
            out.append((resp.status, await resp.json()))
        return out

    for status, body in run(tmp_path, scenario):
        assert status == 400
        assert body["field"] == field
        assert body["error"].startswith(field) or field in body["error"]


def test_records_csv_streams_what_the_store_exports(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> None:
        recs = seed(pbx.cdr)
        resp = await client.get(f"{P}/records.csv", headers=ROOT)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert "attachment" in resp.headers["Content-Disposition"]
        text = await resp.text()
        expected = io.StringIO(newline="")
        assert pbx.cdr.export_csv(expected) == 6
        assert text == expected.getvalue()
        back = records_from_csv(io.StringIO(text, newline=""))
        assert [r.call_id for r in back] == [r.call_id for r in recs]

        resp = await client.get(f"{P}/records.csv?disposition=busy&caller=111", headers=ROOT)
        assert [r.call_id for r in records_from_csv(io.StringIO(await resp.text()))] == ["r3"]
        resp = await client.get(f"{P}/records.csv", headers=BETA)
        assert [r.call_id for r in records_from_csv(io.StringIO(await resp.text()))] == [
            "r2", "r5"]
        assert (await client.get(f"{P}/records.csv?tenant=acme", headers=BETA)).status == 403
        # No match: the header row alone.
        resp = await client.get(f"{P}/records.csv?caller=nobody", headers=ROOT)
        assert (await resp.text()).strip() == ",".join(CSV_COLUMNS)

    run(tmp_path, scenario)


def test_records_csv_large_export_is_chunked_and_complete(tmp_path: Path) -> None:
    n = 3000

    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> None:
        pbx.cdr.put(*(record(f"bulk{i:05d}", 1_700_000_000.0 + i) for i in range(n)))
        resp = await client.get(f"{P}/records.csv", headers=ROOT)
        assert resp.status == 200
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        chunks = [chunk async for chunk in resp.content.iter_chunked(1 << 20)]
        text = b"".join(chunks).decode()
        back = records_from_csv(io.StringIO(text, newline=""))
        assert [r.call_id for r in back] == [f"bulk{i:05d}" for i in range(n)]
        assert len(text) > 4 * admin._CSV_CHUNK      # several chunks' worth went out

    run(tmp_path, scenario)


def test_records_csv_from_an_in_memory_store(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> list[str]:
        seed(pbx.cdr)
        resp = await client.get(f"{P}/records.csv?tenant=beta", headers=ROOT)
        return [r.call_id for r in records_from_csv(io.StringIO(await resp.text()))]

    assert run(tmp_path, scenario, cdr_path=":memory:") == ["r2", "r5"]


def test_csv_export_thread_stops_when_the_reader_goes_away(tmp_path: Path) -> None:
    async def main() -> tuple[bytes | None, int]:
        with CdrStore(tmp_path / "big.sqlite3") as store:
            store.put(*(record(f"x{i}", float(i)) for i in range(5000)))
            chunks = admin._CsvChunks(store, {})
            first = await chunks.next()
            for _ in range(500):          # let the thread fill its queue...
                if chunks._queue.qsize() >= admin._CSV_AHEAD:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)     # ...and see that it blocks there
            queued = chunks._queue.qsize()
            await asyncio.wait_for(chunks.close(), 5.0)
            assert chunks._done is not None and chunks._done.done()
            return first, queued

    first, queued = asyncio.run(main())
    assert first is not None and first.decode().startswith("call_id,")
    assert queued == admin._CSV_AHEAD     # it ran ahead by the bound, no further


def test_csv_export_error_before_the_first_byte_is_a_json_500(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> tuple[int, Any]:
        pbx.cdr.path = tmp_path / "gone" / "cdr.sqlite3"   # the worker cannot open it
        resp = await client.get(f"{P}/records.csv", headers=ROOT)
        return resp.status, await resp.json()

    assert run(tmp_path, scenario) == (500, {"error": "internal error"})


def test_csv_export_failing_midway_never_looks_complete(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def half_export(self: CdrStore, file: Any, **filters: Any) -> int:
        file.write(",".join(CSV_COLUMNS) + "\r\n")
        for _ in range(10):
            file.write("x" * admin._CSV_CHUNK)
        raise RuntimeError("disk gone")

    monkeypatch.setattr(CdrStore, "export_csv", half_export)

    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> tuple[int, int]:
        resp = await client.get(f"{P}/records.csv", headers=ROOT)
        received = 0
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_chunked(1 << 16):
                received += len(chunk)
        return resp.status, received

    status, received = run(tmp_path, scenario)
    assert status == 200          # the header row went out before the failure...
    assert received > 0           # ...and the client saw the stream break, not end


# Events -------------------------------------------------------------------------------------------

def _events() -> list[Event]:
    return [
        CallStarted(call_id="a1", at=1.0, tenant="acme", caller="111", callee="1001"),
        CallStarted(call_id="b1", at=1.5, tenant="beta", caller="222", callee="2001"),
        CallRinging(call_id="a1", at=2.0, tenant="acme"),
        RuleMatched(call_id="a1", at=2.1, tenant="acme", rule="hours", branch="open"),
        RegistrationChanged(at=2.2, tenant="acme", aor="sip:1001@acme.test",
                            contact="sip:1001@10.0.0.1", expires=3600),
        CallAnswered(call_id="b1", at=2.5, tenant="beta"),
        CallAnswered(call_id="a1", at=3.0, tenant="acme"),
        DigitsReceived(call_id="a1", at=4.0, tenant="acme", digits="12#"),
        CallEnded(call_id="b1", at=4.5, tenant="beta"),
        CallEnded(call_id="a1", at=5.0, tenant="acme"),
    ]


async def _receive(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        msg = await asyncio.wait_for(ws.receive(), 5.0)
        assert msg.type == WSMsgType.TEXT, msg
        out.append(json.loads(msg.data))
    return out


async def _nothing_more(ws: aiohttp.ClientWebSocketResponse) -> bool:
    try:
        await asyncio.wait_for(ws.receive(), 0.1)
    except TimeoutError:
        return True
    return False


@pytest.mark.parametrize(("headers", "kinds", "expect"), [
    (ROOT, None, lambda e: True),
    (ROOT, "call.*", lambda e: e.kind.startswith("call.")),
    (ROOT, "rule.matched,call.ended", lambda e: e.kind in ("rule.matched", "call.ended")),
    (ACME, None, lambda e: e.tenant == "acme"),
    (BETA, "call.answered, call.ended", lambda e: e.tenant == "beta"
     and e.kind in ("call.answered", "call.ended")),
], ids=["all", "prefix", "names", "tenant", "tenant+kinds"])
def test_event_stream_in_order_with_kinds_and_tenant(
        tmp_path: Path, headers: dict[str, str], kinds: str | None,
        expect: Callable[[Event], bool]) -> None:
    events = _events()
    wanted = [e.to_dict() for e in events if expect(e)]

    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> None:
        path = f"{P}/events" + (f"?kinds={kinds}" if kinds else "")
        async with client.ws_connect(path, headers=headers) as ws:
            for event in events:
                pbx.bus.publish(event)
            assert await _receive(ws, len(wanted)) == wanted
            assert await _nothing_more(ws)
            # The stream goes on: later events arrive too.
            pbx.bus.publish(events[-1])
            if expect(events[-1]):
                assert await _receive(ws, 1) == [events[-1].to_dict()]

    run(tmp_path, scenario)


def test_event_stream_reports_drops_and_unsubscribes_on_close(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> None:
        before = len(pbx.bus._subscribers)
        async with client.ws_connect(f"{P}/events", headers=ROOT) as ws:
            assert len(pbx.bus._subscribers) == before + 1
            extra = 7
            for i in range(admin._STREAM_QUEUE + extra):   # faster than anyone can send
                pbx.bus.publish(DigitsReceived(call_id=f"c{i}", at=float(i), digits="1"))
            first, second = await _receive(ws, 2)
            assert first == {"kind": "stream.dropped", "count": extra}
            assert second["call_id"] == f"c{extra}"    # the oldest ones were dropped
            rest = await _receive(ws, admin._STREAM_QUEUE - 1)
            assert rest[-1]["call_id"] == f"c{admin._STREAM_QUEUE + extra - 1}"
        for _ in range(100):
            if len(pbx.bus._subscribers) == before:
                break
            await asyncio.sleep(0.01)
        assert len(pbx.bus._subscribers) == before
        pbx.bus.publish(DigitsReceived(call_id="late", at=1.0, digits="1"))   # no one to fail

    run(tmp_path, scenario)


def test_event_stream_refusals(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> list[tuple[int, Any]]:
        out = []
        for path in (f"{P}/events?kinds=call.nosuch", f"{P}/events?kinds=nosuch.*",
                     f"{P}/events?kinds=,", f"{P}/events"):
            resp = await client.get(path, headers=ROOT)   # plain GET, no upgrade
            out.append((resp.status, await resp.json()))
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await client.ws_connect(f"{P}/events", headers=ACME | {"Authorization": "Bearer x"})
        out.append((info.value.status, None))
        return out

    bad_name, bad_prefix, empty, not_ws, no_auth = run(tmp_path, scenario)
    assert empty[0] == 400 and empty[1]["field"] == "kinds"
    assert bad_name[0] == 400 and bad_name[1]["field"] == "kinds"
    assert "unknown event kind 'call.nosuch'" in bad_name[1]["error"]
    assert bad_prefix[0] == 400 and bad_prefix[1]["field"] == "kinds"
    assert not_ws[0] == 426 and "WebSocket" in not_ws[1]["error"]
    assert no_auth[0] == 401


def test_start_admin_on_a_free_port_and_shutdown_closes_streams(tmp_path: Path) -> None:
    async def main() -> tuple[int, int, WSMsgType, int | None, float]:
        pbx = FakePbx(tmp_path / "cdr.sqlite3")
        runner = await start_admin(pbx, AdminConfig(host="127.0.0.1", port=0, tokens=TOKENS))
        port = admin_port(runner)
        try:
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port}{P}"
                async with session.get(f"{url}/calls", headers=ROOT) as resp:
                    status = resp.status
                ws = await session.ws_connect(f"{url}/events", headers=ROOT)
                pbx.bus.publish(CallStarted(call_id="z", at=1.0, caller="1", callee="2"))
                assert (await _receive(ws, 1))[0]["call_id"] == "z"
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                cleanup = asyncio.create_task(runner.cleanup())
                msg = await asyncio.wait_for(ws.receive(), 5.0)
                await asyncio.wait_for(cleanup, 5.0)
                took = loop.time() - t0
                await ws.close()
                return port, status, msg.type, ws.close_code, took
        finally:
            await runner.cleanup()
            pbx.cdr.close()

    port, status, kind, code, took = asyncio.run(main())
    assert port > 0 and status == 200
    assert kind == WSMsgType.CLOSE
    assert code == aiohttp.WSCloseCode.GOING_AWAY
    assert took < 4.0          # no waiting out the shutdown timeout for the open stream


# Metrics ------------------------------------------------------------------------------------------

def test_metrics_need_an_all_tenant_token(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> None:
        assert (await client.post(f"{P}/calls", headers=ACME, json={"to": "5"})).status == 201
        resp = await client.get(f"{P}/metrics", headers=ROOT)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        text = await resp.text()
        assert text == pbx.metrics.render()
        assert 'pbx_calls_started_total{tenant="acme"} 1' in text
        resp = await client.get(f"{P}/metrics", headers=ACME)
        assert resp.status == 403
        assert "all-tenant token" in (await resp.json())["error"]
        assert (await client.get(f"{P}/metrics")).status == 401

    run(tmp_path, scenario)


# The OpenAPI document -----------------------------------------------------------------------------

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in openapi_document()["paths"].items()
            for method in item if method in METHODS}


def test_openapi_documents_every_route_and_nothing_else(tmp_path: Path) -> None:
    pbx = FakePbx(":memory:")
    served = routes(admin_app(pbx, AdminConfig(tokens=TOKENS)))
    pbx.cdr.close()
    assert served == _documented()
    assert len(served) == 10


def test_openapi_is_served_publicly_and_is_consistent(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> Any:
        resp = await client.get(f"{P}/openapi.json")
        assert resp.status == 200
        return await resp.json()

    doc = run(tmp_path, scenario)
    assert doc == openapi_document()
    assert doc["openapi"].startswith("3.1.")
    schemas = doc["components"]["schemas"]
    op_ids = []
    for path, item in doc["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method, op in item.items():
            op_ids.append(op["operationId"])
            assert op["responses"], (method, path)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)
            public = op.get("security") == []
            assert public == (path == f"{P}/openapi.json")
            if not public:
                assert "401" in op["responses"], (method, path)
    assert len(op_ids) == len(set(op_ids))
    # Every $ref resolves.
    text = json.dumps(doc)
    for ref in set(re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', text)):
        assert ref[1] in doc["components"][ref[0]], ref
    # The record schemas are the records' fields.
    assert list(schemas["CallRecord"]["properties"]) == list(CSV_COLUMNS)
    assert list(schemas["Leg"]["properties"]) == [f.name for f in dataclasses.fields(LegRecord)]


def test_openapi_parameters_and_fields_are_what_the_api_accepts(tmp_path: Path) -> None:
    doc = openapi_document()

    async def scenario(client: TestClient[Any, Any], pbx: FakePbx) -> None:
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if path.endswith(("/openapi.json", "/metrics")):
                    continue
                documented = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
                resp = await client.request(method.upper(), _concrete(path) + "?zz=1",
                                            headers=ROOT)
                assert resp.status == 400
                error = (await resp.json())["error"]
                allowed = re.search(r"\(allowed: ([^)]*)\)", error)
                accepted = set(allowed.group(1).split(", ")) if allowed else set()
                assert accepted == documented, (method, path)
        # Every documented body field is checked by the validator, and nothing else is allowed.
        fields = doc["components"]["schemas"]["OriginateRequest"]["properties"]
        for name in fields:
            resp = await client.post(f"{P}/calls", headers=ROOT, json={"to": "1", name: [1]})
            assert resp.status == 400
            assert (await resp.json())["field"] == name
        assert doc["components"]["schemas"]["OriginateRequest"]["additionalProperties"] is False

    run(tmp_path, scenario)
