"""The B2BUA against SIPp callers and callees: every outcome a call can have, and its record.

The PBX runs in the test's event loop (``Pbx`` with a route to a small app); SIPp plays the
caller (A) and the parties the app dials (B, C) over loopback. Each test checks both the SIP
exchange (SIPp's scenario succeeds: it asserts every message it expects) and the call record.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pbx.apps.numbers import NumberList
from pbx.apps.rules import blacklist, business_hours, by_region
from pbx.apps.schedule import Schedule
from pbx.call import Call
from pbx.cdr import CallRecord
from pbx.config import parse_config
from pbx.media.engine import EngineConfig
from pbx.pbx import Pbx
from pbx.sip.refer import Replaces, parse_sipfrag, refer_to_value
from pbx.sip.uri import parse_uri

from .media_uas import MediaUas
from .pbxproc import PortAllocator
from .sipp import SCENARIOS, SippProcess, SippResult

Runner = Callable[..., SippProcess]


def _config(tmp_path: Path, port: int) -> Any:
    text = f"""
[sip]
listen = ["udp:127.0.0.1:{port}"]
domain = "pbx.test"
trusted = ["127.0.0.0/8"]
[store]
path = "pbx.sqlite3"
"""
    return parse_config(text, tmp_path / "pbx.toml")


def _fail_scenario(tmp_path: Path, status: int, caller: str = "01062345678") -> Path:
    path = tmp_path / f"uac_fail_{status}_{caller}.xml"
    text = (SCENARIOS / "b2b_uac_fail.xml").read_text().replace("@EXPECTED@", str(status))
    text = text.replace("01062345678", caller)
    path.write_text(text)
    return path


async def _records(pbx: Pbx, count: int = 1, timeout: float = 5.0) -> list[CallRecord]:
    """The call records once ``count`` calls are closed."""
    assert pbx.cdr is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        records = [r for r in pbx.cdr.query() if r.disposition != "in progress"]
        if len(records) >= count or loop.time() > deadline:
            return records
        await asyncio.sleep(0.05)


async def _wait(*procs: SippProcess, calls: int = 1) -> list[SippResult]:
    results = []
    for proc in procs:
        result = await asyncio.to_thread(proc.wait)
        results.append(result.check(calls))
    return results


def _run(tmp_path: Path, ports: PortAllocator,
         body: Callable[[Pbx, int], Awaitable[None]],
         app: Callable[[Call], Awaitable[None]]) -> None:
    async def main() -> None:
        port = ports.port()
        pbx = Pbx(_config(tmp_path, port))
        pbx.route("200", app, name="direct")
        async with pbx:
            await body(pbx, port)
    asyncio.run(main())


def _direct(target: str, timeout: float = 10.0) -> Callable[[Call], Awaitable[None]]:
    async def direct(call: Call) -> None:
        leg = await call.dial(target, timeout=timeout)
        await call.bridge(leg)
    return direct


def test_caller_cancels_while_the_callee_rings(tmp_path: Path, ports: PortAllocator,
                                               run_sipp: Runner) -> None:
    b_port = ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "uas_cancel.xml", local_port=b_port, calls=1,
                     timeout=20)
        a = run_sipp("a", scenario=SCENARIOS / "uac_cancel.xml", remote=f"127.0.0.1:{port}",
                     service="200", calls=1, timeout=20)
        await _wait(a, b)
        [record] = await _records(pbx)
        assert record.disposition == "abandoned", record
        assert record.hangup_side == "caller"
        assert record.answer_time is None and record.billable == 0
        b_leg = record.legs[1]
        assert b_leg.party == f"sip:b@127.0.0.1:{b_port}" and b_leg.reason == "cancelled"
        assert b_leg.ring_time is not None and b_leg.answer_time is None

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))


def test_busy_callee_gives_a_busy_record(tmp_path: Path, ports: PortAllocator,
                                         run_sipp: Runner) -> None:
    b_port = ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_busy.xml", local_port=b_port, calls=1,
                     timeout=20)
        a = run_sipp("a", scenario=_fail_scenario(tmp_path, 486),
                     remote=f"127.0.0.1:{port}", service="200", calls=1, timeout=20)
        await _wait(a, b)
        [record] = await _records(pbx)
        assert record.disposition == "busy", record
        assert record.status == 486
        assert record.caller == "01062345678" and record.dialed == "200"
        assert record.caller_city in ("北京市", "Beijing")
        assert record.legs[1].status == 486 and record.legs[1].reason == "busy"

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))


def test_callee_not_answering_gives_no_answer(tmp_path: Path, ports: PortAllocator,
                                              run_sipp: Runner) -> None:
    b_port = ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "uas_cancel.xml", local_port=b_port, calls=1,
                     timeout=20)
        a = run_sipp("a", scenario=_fail_scenario(tmp_path, 480),
                     remote=f"127.0.0.1:{port}", service="200", calls=1, timeout=20)
        await _wait(a, b)
        [record] = await _records(pbx)
        assert record.disposition == "no answer", record
        assert record.legs[1].reason == "cancelled" and record.legs[1].ring_time is not None

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}", timeout=1.5))


def test_hold_and_resume_are_carried_across(tmp_path: Path, ports: PortAllocator,
                                            run_sipp: Runner) -> None:
    b_port = ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_hold.xml", local_port=b_port, calls=1,
                     timeout=20)
        a = run_sipp("a", scenario=SCENARIOS / "b2b_uac_hold.xml", remote=f"127.0.0.1:{port}",
                     service="200", calls=1, timeout=20)
        ra, rb = await _wait(a, b)
        [record] = await _records(pbx)
        assert record.disposition == "answered" and record.hangup_side == "caller", record
        # The B leg never saw the caller's Call-ID, tags or numbers' Via/Contact.
        a_msgs, b_msgs = ra.messages(), rb.messages()
        a_ids = {m.call_id for m in a_msgs}
        assert not a_ids & {m.call_id for m in b_msgs}
        invite = next(m for m in b_msgs if m.method == "INVITE" and not m.is_response)
        assert "SIPpTag00" not in invite.text          # the caller's From tag stays on its side

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))


def test_blind_transfer_by_refer(tmp_path: Path, ports: PortAllocator,
                                 run_sipp: Runner) -> None:
    b_port, c_port = ports.port(), ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        c = run_sipp("c", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=c_port,
                     calls=1, timeout=25)
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_refer.xml", local_port=b_port,
                     calls=1, timeout=25, extra=["-key", "target", f"c@127.0.0.1:{c_port}"])
        a = run_sipp("a", scenario="uac", remote=f"127.0.0.1:{port}", service="200", calls=1,
                     timeout=25, extra=["-d", "3000"])
        await _wait(a, b, c)
        [record] = await _records(pbx)
        assert record.disposition == "answered", record
        assert f"transfer:sip:c@127.0.0.1:{c_port}" in record.path
        parties = [leg.party for leg in record.legs]
        assert parties[1:] == [f"sip:b@127.0.0.1:{b_port}", f"sip:c@127.0.0.1:{c_port}"]
        assert record.legs[1].reason == "normal" and record.legs[2].answer_time is not None
        assert record.callee == f"sip:c@127.0.0.1:{c_port}"

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))


def test_rules_reject_with_their_status_and_say_why(tmp_path: Path, ports: PortAllocator,
                                                    run_sipp: Runner) -> None:
    """Real numbers through real rules, on a fake clock: a Beijing fixed line (area 010) and a
    138 mobile are blacklisted (403), the hotline is closed on a Saturday evening (480), and a
    Guangzhou caller (020) is routed by region to an app that declines (603)."""
    saturday_evening = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)      # 20:30 in Shanghai
    hours = Schedule("Asia/Shanghai", {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu",
                                                                      "fri", "sat")})
    blocked = blacklist(NumberList(["area:010", "138*"]), status=403, name="blocked")

    async def decline(call: Call) -> None:
        await call.reject(603)

    async def never(call: Call) -> None:
        raise AssertionError("the rules should have stopped this call")

    async def main() -> None:
        port = ports.port()
        pbx = Pbx(_config(tmp_path, port), clock=lambda: saturday_evening)
        pbx.route("300", never, rules=[blocked], name="blocked-line")
        pbx.route("301", never, rules=[business_hours(hours, closed=480)], name="hotline")
        pbx.route("302", never, rules=[by_region({"广州市": decline})], name="regional")
        async with pbx:
            runs = [("300", 403, "01062345678"), ("300", 403, "13800138000"),
                    ("301", 480, "13912345678"), ("302", 603, "02083456789")]
            for i, (number, status, caller) in enumerate(runs):
                a = run_sipp(f"a{i}", scenario=_fail_scenario(tmp_path, status, caller),
                             remote=f"127.0.0.1:{port}", service=number, calls=1, timeout=15)
                await _wait(a)
            records = sorted(await _records(pbx, 4), key=lambda r: r.start_time)
        assert [r.disposition for r in records] == ["rejected by rule"] * 3 + ["busy"], records
        assert [r.status for r in records] == [403, 403, 480, 603]
        assert records[0].path == ["blocked-line", "blocked:blocked"]
        assert records[0].hangup_cause == "blocked: area:010"
        assert records[1].hangup_cause == "blocked: 138*"
        assert records[2].path == ["hotline", "hours:closed"]
        assert "closed" in records[2].hangup_cause
        assert records[3].path == ["regional", "region:广州市"]
        assert records[3].caller_city in ("广州市", "Guangzhou")

    asyncio.run(main())


def test_a_redirect_is_followed(tmp_path: Path, ports: PortAllocator, run_sipp: Runner) -> None:
    b_port, c_port = ports.port(), ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        c = run_sipp("c", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=c_port,
                     calls=1, timeout=20)
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_redirect.xml", local_port=b_port,
                     calls=1, timeout=20, extra=["-key", "target", f"c@127.0.0.1:{c_port}"])
        a = run_sipp("a", scenario="uac", remote=f"127.0.0.1:{port}", service="200", calls=1,
                     timeout=20, extra=["-d", "500"])
        await _wait(a, b, c)
        [record] = await _records(pbx)
        assert record.disposition == "answered", record
        assert [leg.status for leg in record.legs[1:]] == [302, None]
        assert record.legs[2].answer_time is not None

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))


def test_attended_transfer_with_replaces(tmp_path: Path, ports: PortAllocator,
                                         run_sipp: Runner) -> None:
    """B (a test UA) takes A's call, consults C through the PBX (SIPp B2 -> number 201 -> C),
    then REFERs A to C with Replaces naming the consultation dialog: A ends up talking to C,
    both of B's dialogs are hung up, and A's record says so."""
    b_port, c_port = ports.port(), ports.port()

    async def to_c(call: Call) -> None:
        leg = await call.dial(f"sip:c@127.0.0.1:{c_port}", timeout=10)
        await call.bridge(leg)

    async def main() -> None:
        port = ports.port()
        pbx = Pbx(_config(tmp_path, port))
        pbx.route("200", _direct(f"sip:b@127.0.0.1:{b_port}"), name="to-b")
        pbx.route("201", to_c, name="consult")
        async with pbx:
            assert pbx.engine is not None
            async with MediaUas(pbx.engine, port=b_port) as b:
                c = run_sipp("c", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=c_port,
                             calls=1, timeout=30)
                a = run_sipp("a", scenario="uac", remote=f"127.0.0.1:{port}", service="200",
                             calls=1, timeout=30, extra=["-d", "6000"])
                first = await (await b.next_call()).wait_confirmed()
                b2 = run_sipp("b2", scenario=SCENARIOS / "b2b_uac_consult.xml",
                              remote=f"127.0.0.1:{port}", service="201", calls=1, timeout=30)
                for _ in range(200):
                    consult = next((x for x in pbx.calls.values() if x.dialed == "201"), None)
                    if consult is not None and consult.bridged_with is not None:
                        break
                    await asyncio.sleep(0.02)
                assert consult is not None and consult.bridged_with is not None
                dialog = consult._handle.session.dialog
                assert dialog is not None
                replaces = Replaces(dialog.id.call_id, dialog.id.local_tag,
                                    dialog.id.remote_tag or "0")
                target = refer_to_value(parse_uri(f"sip:c@127.0.0.1:{c_port}"), replaces)
                resp = await b.request(first, "REFER", [("Refer-To", target)])
                assert resp.status == 202
                await first.wait_terminated(5)                 # the PBX hangs up B's first leg
                await _wait(b2, a, c)
                statuses = [parse_sipfrag(n.body) for n in first.notifies]
                assert statuses[-1] == 200, statuses
            records = {r.dialed: r for r in await _records(pbx, 2)}
        record = records["200"]
        assert record.disposition == "answered" and record.hangup_side == "caller", record
        assert any(step.startswith("transfer:") for step in record.path)
        assert record.callee == f"sip:c@127.0.0.1:{c_port}"
        assert [leg.party for leg in record.legs[1:]] == [f"sip:b@127.0.0.1:{b_port}",
                                                          f"sip:c@127.0.0.1:{c_port}"]
        assert records["201"].disposition == "answered"

    asyncio.run(main())


def test_session_timers_refresh_and_end_dead_calls(tmp_path: Path, ports: PortAllocator,
                                                   run_sipp: Runner) -> None:
    """RFC 4028 on both legs. B leaves the refresh to the PBX: the PBX re-INVITEs it at half
    the interval. A takes the refresh on itself and never refreshes: the PBX hangs up before
    the session expires. Time is moved forward by shifting each leg's timer start, so the
    test does not wait the 45 and 60 seconds."""
    b_port = ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_timer.xml", local_port=b_port,
                     calls=1, timeout=20)
        a = run_sipp("a", scenario=SCENARIOS / "b2b_uac_timer.xml", remote=f"127.0.0.1:{port}",
                     service="200", calls=1, timeout=20)
        for _ in range(200):
            call = next(iter(pbx.calls.values()), None)
            if call is not None and call.bridged_with is not None:
                break
            await asyncio.sleep(0.02)
        assert call is not None and call.bridged_with is not None
        leg = call.bridged_with
        assert leg._timer is not None and call._timer is not None
        assert (leg._timer.refresher, leg._timer.interval) == ("local", 90)
        assert (call._timer.refresher, call._timer.interval) == ("remote", 90)
        started = leg._timer.started
        leg._timer = dataclasses.replace(leg._timer, started=started - 50)
        leg._arm_timer()
        for _ in range(200):
            if not leg._refreshing and leg._timer.started > started - 50:
                break
            await asyncio.sleep(0.02)
        assert leg._timer.started > started - 50, "the refresh re-INVITE was not answered"
        call._timer = dataclasses.replace(call._timer, started=call._timer.started - 80)
        call._arm_timer()
        await _wait(a, b)
        [record] = await _records(pbx)
        assert record.hangup_side == "system" and record.hangup_cause == "session timer expired"

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))


def test_a_call_without_rtp_is_ended(tmp_path: Path, ports: PortAllocator,
                                     run_sipp: Runner) -> None:
    """SIPp's caller and callee send no RTP: after the engine's RTP timeout (1 s here) the
    PBX hangs both up (BYE to each) and the record says why."""
    b_port = ports.port()

    async def main() -> None:
        port, rtp = ports.port(), ports.block(20)
        pbx = Pbx(_config(tmp_path, port),
                  engine=EngineConfig(port_min=rtp, port_max=rtp + 19, rtp_timeout=1.0))
        pbx.route("200", _direct(f"sip:b@127.0.0.1:{b_port}"), name="direct")
        async with pbx:
            b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=b_port,
                         calls=1, timeout=20)
            a = run_sipp("a", scenario=SCENARIOS / "b2b_uac_consult.xml",
                         remote=f"127.0.0.1:{port}", service="200", calls=1, timeout=20)
            await _wait(a, b)
            [record] = await _records(pbx)
        assert record.disposition == "answered" and record.hangup_side == "system", record
        assert record.hangup_cause == "RTP timeout"
        assert record.duration is not None and 0.9 < record.duration < 5

    asyncio.run(main())


def test_transfer_from_the_api(tmp_path: Path, ports: PortAllocator, run_sipp: Runner) -> None:
    """An app bridges A with B, then (in a task of the call's task group) transfers A to C:
    first attended (C dialed while A still talks to B, then swapped in), which hangs up B."""
    b_port, c_port = ports.port(), ports.port()

    async def app(call: Call) -> None:
        leg = await call.dial(f"sip:b@127.0.0.1:{b_port}", timeout=10)

        async def later() -> None:
            await asyncio.sleep(0.5)
            consult = await call.dial(f"sip:c@127.0.0.1:{c_port}", timeout=10)
            await call.transfer(consult)

        assert call.tasks is not None
        call.tasks.create_task(later())
        await call.bridge(leg)

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=b_port,
                     calls=1, timeout=20)
        c = run_sipp("c", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=c_port,
                     calls=1, timeout=20)
        a = run_sipp("a", scenario="uac", remote=f"127.0.0.1:{port}", service="200", calls=1,
                     timeout=20, extra=["-d", "2500"])
        await _wait(a, b, c)
        [record] = await _records(pbx)
        assert record.disposition == "answered" and record.hangup_side == "caller", record
        assert f"transfer:sip:c@127.0.0.1:{c_port}" in record.path
        assert record.callee == f"sip:c@127.0.0.1:{c_port}"
        assert record.legs[1].end_time is not None and record.legs[2].answer_time is not None
        assert record.legs[1].end_time < record.end_time  # type: ignore[operator]

    _run(tmp_path, ports, body, app)


def test_late_offer_from_the_caller(tmp_path: Path, ports: PortAllocator,
                                    run_sipp: Runner) -> None:
    """INVITE without SDP: the PBX offers in its 200, the answer comes in the ACK, and the
    caller's leg is then bridged with the callee's in the engine."""
    b_port = ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=b_port,
                     calls=1, timeout=20)
        a = run_sipp("a", scenario=SCENARIOS / "b2b_uac_late_offer.xml",
                     remote=f"127.0.0.1:{port}", service="200", calls=1, timeout=20)
        seen: dict[str, Any] = {}
        for _ in range(100):
            call = next(iter(pbx.calls.values()), None)
            if call is not None and call.media is not None and call.stream is not None:
                seen["relayed"] = call.stream.relayed_with is not None
                break
            await asyncio.sleep(0.02)
        await _wait(a, b)
        [record] = await _records(pbx)
        assert record.disposition == "answered" and record.hangup_side == "caller", record
        assert seen.get("relayed") is True, seen

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))


def test_callee_hangs_up_first(tmp_path: Path, ports: PortAllocator, run_sipp: Runner) -> None:
    b_port = ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_hangup.xml", local_port=b_port,
                     calls=1, timeout=20)
        a = run_sipp("a", scenario=SCENARIOS / "b2b_uac_consult.xml",
                     remote=f"127.0.0.1:{port}", service="200", calls=1, timeout=20)
        await _wait(a, b)
        [record] = await _records(pbx)
        assert record.disposition == "answered" and record.hangup_side == "callee", record
        assert record.billable is not None and 1 <= record.billable <= 3

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))


def test_early_media_reaches_the_unanswered_caller(tmp_path: Path, ports: PortAllocator,
                                                   run_sipp: Runner) -> None:
    """B sends 183 with SDP: A gets a 183 with the PBX's SDP at once, and the two legs are
    relayed before anyone answered; then B answers (200 to A) and the app hangs up."""
    b_port = ports.port()
    early: dict[str, Any] = {}

    async def app(call: Call) -> None:
        async def watch() -> None:
            while call.state != "early":
                await asyncio.sleep(0.01)
            early["relayed"] = call.stream is not None and call.stream.relayed_with is not None
        assert call.tasks is not None
        call.tasks.create_task(watch())
        leg = await call.dial(f"sip:b@127.0.0.1:{b_port}", timeout=10)
        assert call.state == "answered"

        async def later() -> None:
            await asyncio.sleep(0.5)
            await call.hangup()
        call.tasks.create_task(later())
        await call.bridge(leg)

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_early.xml", local_port=b_port,
                     calls=1, timeout=20)
        a = run_sipp("a", scenario=SCENARIOS / "b2b_uac_early.xml",
                     remote=f"127.0.0.1:{port}", service="200", calls=1, timeout=20)
        await _wait(a, b)
        [record] = await _records(pbx)
        assert record.disposition == "answered" and record.hangup_side == "system", record
        assert early.get("relayed") is True, early

    _run(tmp_path, ports, body, app)


def test_hold_and_unhold_from_the_api(tmp_path: Path, ports: PortAllocator,
                                      run_sipp: Runner) -> None:
    """leg.hold() re-INVITEs the party with a=sendonly (and plays music on hold to it);
    leg.unhold() re-INVITEs it with a=sendrecv and the bridge is back."""
    b_port = ports.port()
    seen: dict[str, Any] = {}

    async def app(call: Call) -> None:
        leg = await call.dial(f"sip:b@127.0.0.1:{b_port}", timeout=10)

        async def hold_a_moment() -> None:
            await asyncio.sleep(0.4)
            await leg.hold()
            await asyncio.sleep(0.5)
            seen["held_relay"] = leg.stream is not None and leg.stream.relayed_with is not None
            await leg.unhold()
            await asyncio.sleep(0.3)
            seen["resumed_relay"] = leg.stream is not None and leg.stream.relayed_with is not None
        assert call.tasks is not None
        call.tasks.create_task(hold_a_moment())
        await call.bridge(leg)

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_hold.xml", local_port=b_port,
                     calls=1, timeout=20)
        a = run_sipp("a", scenario="uac", remote=f"127.0.0.1:{port}", service="200", calls=1,
                     timeout=20, extra=["-d", "2000"])
        await _wait(a, b)
        assert seen == {"held_relay": False, "resumed_relay": True}, seen

    _run(tmp_path, ports, body, app)


def test_hold_and_resume_by_update(tmp_path: Path, ports: PortAllocator,
                                   run_sipp: Runner) -> None:
    """RFC 3311: the caller holds and resumes with UPDATE; the PBX answers in the 200 to the
    UPDATE and carries each change to the callee by re-INVITE."""
    b_port = ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_hold.xml", local_port=b_port,
                     calls=1, timeout=20)
        a = run_sipp("a", scenario=SCENARIOS / "b2b_uac_update_hold.xml",
                     remote=f"127.0.0.1:{port}", service="200", calls=1, timeout=20)
        await _wait(a, b)
        [record] = await _records(pbx)
        assert record.disposition == "answered" and record.hangup_side == "caller", record

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))


def test_codec_change_mid_call_switches_the_bridge_to_transcoding(
        tmp_path: Path, ports: PortAllocator, run_sipp: Runner) -> None:
    """A re-INVITEs to PCMA while B stays on PCMU: the PBX answers PCMA and bridges the two
    through the engine's mix (transcoding) instead of the relay; back on PCMU, relay again."""
    b_port = ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=b_port,
                     calls=1, timeout=20)
        a = run_sipp("a", scenario=SCENARIOS / "b2b_uac_recodec.xml",
                     remote=f"127.0.0.1:{port}", service="200", calls=1, timeout=20)
        modes: list[tuple[str, str]] = []
        for _ in range(250):
            call = next(iter(pbx.calls.values()), None)
            if call is not None and call.media is not None and call.stream is not None \
                    and call.bridged_with is not None:
                mode = "relay" if call.stream.relayed_with is not None else (
                    "mix" if call._conference is not None else "none")
                state = (call.media.send_codec.name, mode)
                if not modes or modes[-1] != state:
                    modes.append(state)
            elif modes:
                break
            await asyncio.sleep(0.01)
        await _wait(a, b)
        assert modes == [("PCMU", "relay"), ("PCMA", "mix"), ("PCMU", "relay")], modes

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))


def test_refer_to_an_untrusted_place_is_refused(tmp_path: Path, ports: PortAllocator,
                                                run_sipp: Runner) -> None:
    """Toll-fraud guard: a blind transfer to a URI outside the PBX and its trusted networks gets
    403 and the call goes on with the transferor."""
    b_port = ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_refer_denied.xml", local_port=b_port,
                     calls=1, timeout=20, extra=["-key", "target", "premium@198.51.100.7"])
        a = run_sipp("a", scenario="uac", remote=f"127.0.0.1:{port}", service="200", calls=1,
                     timeout=20, extra=["-d", "1500"])
        await _wait(a, b)
        [record] = await _records(pbx)
        assert record.disposition == "answered" and record.hangup_side == "caller", record
        assert not any(step.startswith("transfer:") for step in record.path)
        assert len(record.legs) == 2

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))


def test_a_trunk_that_challenges_gets_credentials(tmp_path: Path, ports: PortAllocator,
                                                  run_sipp: Runner) -> None:
    """Dialing out through a [[routes]] trunk with username/password: its 401 is answered with
    digest credentials (SIPp verifies them) and the call goes through."""
    b_port = ports.port()

    async def main() -> None:
        port = ports.port()
        config = parse_config(f"""
[sip]
listen = ["udp:127.0.0.1:{port}"]
domain = "pbx.test"
trusted = ["127.0.0.0/8"]
[store]
path = "pbx.sqlite3"
[[routes]]
match = "^9(\\\\d+)$"
to = "sip:\\\\1@127.0.0.1:{b_port}"
username = "trunkuser"
password = "trunk-secret"
""", tmp_path / "pbx.toml")
        pbx = Pbx(config)
        pbx.route("200", _direct("9123456"), name="out")
        async with pbx:
            b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_auth.xml", local_port=b_port,
                         calls=1, timeout=20,
                         extra=["-key", "user", "trunkuser", "-key", "pass", "trunk-secret"])
            a = run_sipp("a", scenario="uac", remote=f"127.0.0.1:{port}", service="200",
                         calls=1, timeout=20, extra=["-d", "500"])
            await _wait(a, b)
            [record] = await _records(pbx)
        assert record.disposition == "answered", record
        assert record.legs[1].party == "9123456"

    asyncio.run(main())


def test_a_422_is_answered_with_the_asked_interval(tmp_path: Path, ports: PortAllocator,
                                                   run_sipp: Runner) -> None:
    b_port = ports.port()

    async def body(pbx: Pbx, port: int) -> None:
        b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_422.xml", local_port=b_port,
                     calls=1, timeout=20)
        a = run_sipp("a", scenario="uac", remote=f"127.0.0.1:{port}", service="200", calls=1,
                     timeout=20, extra=["-d", "500"])
        intervals: list[int] = []
        for _ in range(200):
            call = next(iter(pbx.calls.values()), None)
            leg = call.bridged_with if call is not None else None
            if leg is not None and leg._timer is not None:
                intervals.append(leg._timer.interval)
                break
            await asyncio.sleep(0.02)
        await _wait(a, b)
        [record] = await _records(pbx)
        assert record.disposition == "answered", record
        assert intervals == [3600], intervals          # the leg keeps the raised interval

    _run(tmp_path, ports, body, _direct(f"sip:b@127.0.0.1:{b_port}"))
