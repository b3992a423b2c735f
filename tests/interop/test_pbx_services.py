"""The Pbx's services around calls, end to end: webhooks and the admin API from the config,
originated calls, and an app that crashes (its call ends with a record; other calls go on)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from pbx.call import Call
from pbx.cdr import CallRecord
from pbx.config import parse_config
from pbx.pbx import Pbx
from pbx.webhooks import verify_signature

from .pbxproc import PortAllocator
from .sipp import SCENARIOS, SippProcess

TOKEN = "admin-token-0123456789abcdef"
SECRET = "hook-secret"


def _config(tmp_path: Path, port: int, extra: str = "") -> Any:
    return parse_config(f"""
[sip]
listen = ["udp:127.0.0.1:{port}"]
domain = "pbx.test"
trusted = ["127.0.0.0/8"]
[store]
path = "pbx.sqlite3"
{extra}
""", tmp_path / "pbx.toml")


async def _closed(pbx: Pbx, count: int, timeout: float = 5.0) -> list[CallRecord]:
    assert pbx.cdr is not None
    for _ in range(int(timeout / 0.05)):
        records = [r for r in pbx.cdr.query() if r.disposition != "in progress"]
        if len(records) >= count:
            return records
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} closed records expected: {pbx.cdr.query()}")


async def _check(proc: SippProcess, calls: int = 1) -> None:
    (await asyncio.to_thread(proc.wait)).check(calls)


def test_webhooks_and_admin_api_from_the_config(tmp_path: Path, ports: PortAllocator,
                                                run_sipp: Any) -> None:
    hits: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    b_port, c_port = ports.port(), ports.port()

    async def direct(call: Call) -> None:
        leg = await call.dial(f"sip:b@127.0.0.1:{b_port}", timeout=10)
        await call.bridge(leg)

    async def main() -> None:
        async with TestServer(receiver, host="127.0.0.1") as server:
            port, admin_port = ports.port(), ports.port()
            config = _config(tmp_path, port, f"""
[admin]
listen = "127.0.0.1:{admin_port}"
token = "{TOKEN}"
[[webhooks]]
url = "{server.make_url('/hook')}"
secret = "{SECRET}"
events = ["call.*", "leg.*"]
""")
            pbx = Pbx(config)
            pbx.route("200", direct, name="direct")

            @pbx.app("greet")
            async def greet(call: Call) -> None:
                await call.say("Your order is ready.")

            api = f"http://127.0.0.1:{admin_port}/api/v1"
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with pbx, aiohttp.ClientSession() as http:
                b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=b_port,
                             calls=1, timeout=20)
                a = run_sipp("a", scenario=SCENARIOS / "b2b_uac_consult.xml",
                             remote=f"127.0.0.1:{port}", service="200", calls=1, timeout=20)
                for _ in range(200):
                    if any(c.bridged_with for c in pbx.calls.values()):
                        break
                    await asyncio.sleep(0.02)
                async with http.get(f"{api}/calls", headers=auth) as resp:
                    assert resp.status == 200
                    [listed] = (await resp.json())["calls"]
                assert listed["dialed"] == "200" and listed["state"] == "answered"
                async with http.get(f"{api}/calls") as resp:
                    assert resp.status == 401                  # no token
                async with http.delete(f"{api}/calls/{listed['id']}", headers=auth) as resp:
                    assert resp.status == 204                  # hung up: A and B get BYE
                await _check(a)
                await _check(b)
                # Originate through the API: the PBX calls C and runs the "greet" app.
                c = run_sipp("c", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=c_port,
                             calls=1, timeout=30)
                body = {"to": f"sip:c@127.0.0.1:{c_port}", "app": "greet",
                        "data": {"order": 42}}
                async with http.post(f"{api}/calls", headers=auth, json=body) as resp:
                    assert resp.status == 201, await resp.text()
                    originated = (await resp.json())["call_id"]
                await _check(c)
                records = {r.call_id: r for r in await _closed(pbx, 2)}
                assert pbx.webhooks is not None
                await asyncio.wait_for(pbx.webhooks.wait_idle(), 10)
                async with http.get(f"{api}/records/{originated}", headers=auth) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["data"] == {"order": 42}
        first = records[listed["id"]]
        assert first.hangup_cause == "hung up by the admin API"
        assert records[originated].disposition == "answered"
        events = []
        for headers, raw in hits:
            assert verify_signature(SECRET, headers["X-Pbx-Timestamp"], raw,
                                    headers["X-Pbx-Signature"],
                                    now=float(headers["X-Pbx-Timestamp"]))
            events.append(json.loads(raw))
        kinds = [e["kind"] for e in events if e["call_id"] == listed["id"]]
        assert kinds[0] == "call.started" and kinds[-1] == "call.ended", kinds
        assert "call.answered" in kinds and "call.bridged" in kinds and "leg.started" in kinds
        assert {e["call_id"] for e in events} == {listed["id"], originated}

    asyncio.run(main())


def test_a_crashing_app_ends_only_its_own_call(tmp_path: Path, ports: PortAllocator,
                                               run_sipp: Any) -> None:
    b_port = ports.port()

    async def crash(call: Call) -> None:
        await call.answer()
        raise RuntimeError("bug in the app")

    async def direct(call: Call) -> None:
        leg = await call.dial(f"sip:b@127.0.0.1:{b_port}", timeout=10)
        await call.bridge(leg)

    async def main() -> None:
        port = ports.port()
        pbx = Pbx(_config(tmp_path, port))
        pbx.route("500", crash, name="crash")
        pbx.route("200", direct, name="direct")
        async with pbx:
            b = run_sipp("b", scenario=SCENARIOS / "b2b_uas_answer.xml", local_port=b_port,
                         calls=1, timeout=20)
            good = run_sipp("good", scenario="uac", remote=f"127.0.0.1:{port}", service="200",
                            calls=1, timeout=20, extra=["-d", "2000"])
            await asyncio.sleep(0.3)
            bad = run_sipp("bad", scenario=SCENARIOS / "b2b_uac_consult.xml",
                           remote=f"127.0.0.1:{port}", service="500", calls=1, timeout=20)
            await _check(bad)                        # answered, then the PBX's BYE
            await _check(good)                       # the other call went on to its end
            await _check(b)
            records = {r.dialed: r for r in await _closed(pbx, 2)}
        crashed = records["500"]
        # It was answered before the app failed: the record keeps that, and says why it ended.
        assert crashed.disposition == "answered" and crashed.hangup_side == "system", crashed
        assert crashed.hangup_cause == "the app failed" and crashed.legs[0].reason == "app_error"
        assert records["200"].disposition == "answered"
        assert records["200"].hangup_side == "caller"

    asyncio.run(main())


def test_requests_in_unknown_dialogs_get_481(tmp_path: Path, ports: PortAllocator) -> None:
    import socket

    async def main() -> None:
        port = ports.port()
        async with Pbx(_config(tmp_path, port)):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
                me = sock.getsockname()[1]
                sock.settimeout(5)
                for method in ("BYE", "INFO", "INVITE"):
                    msg = (f"{method} sip:pbx@127.0.0.1:{port} SIP/2.0\r\n"
                           f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{method}x1\r\n"
                           f"From: <sip:x@127.0.0.1>;tag=a1\r\nTo: <sip:pbx@127.0.0.1>;tag=b2\r\n"
                           f"Call-ID: nosuchdialog\r\nCSeq: 5 {method}\r\nMax-Forwards: 70\r\n"
                           f"Content-Length: 0\r\n\r\n").encode()
                    sock.sendto(msg, ("127.0.0.1", port))
                    while True:
                        reply = await asyncio.to_thread(sock.recv, 65535)
                        if not reply.startswith(b"SIP/2.0 100"):
                            break
                    assert reply.startswith(b"SIP/2.0 481"), (method, reply[:80])

    asyncio.run(main())


def test_new_calls_are_refused_while_overloaded(tmp_path: Path, ports: PortAllocator,
                                                run_sipp: Any) -> None:
    """While the event loop runs late, new INVITEs get 503 with Retry-After at once (calls in
    progress go on), until a while after the last late sample; the lateness is measured for
    real by blocking the loop."""
    import time as _time

    async def never(call: Call) -> None:
        raise AssertionError("an overloaded PBX must not take new calls")

    async def main() -> None:
        port = ports.port()
        pbx = Pbx(_config(tmp_path, port))
        pbx.route("200", never, name="never")
        async with pbx:
            server = pbx.server
            assert server is not None
            await asyncio.sleep(0.1)                 # the lag watcher is sampling

            async def stuck(times: int) -> None:     # the loop blocked 400 ms, repeatedly,
                for _ in range(times):               # letting only the lag watcher run
                    _time.sleep(0.4)                 # in between (it is due at once)
                    await asyncio.sleep(0.01)

            await stuck(server._LAG_SAMPLES - 1)
            assert not server.overloaded             # a pause or two (GC) is not overload
            await stuck(1)
            assert server.overloaded
            for _ in range(100):                     # normal running again: over (after
                if not server.overloaded:            # _LAG_HOLD, 1 s, on an idle machine)
                    break
                await asyncio.sleep(0.05)
            assert not server.overloaded
            server._LAG_HOLD = 15.0                  # long enough for SIPp to start
            await stuck(server._LAG_SAMPLES)
            assert server.overloaded
            scenario = tmp_path / "uac_503.xml"
            scenario.write_text((SCENARIOS / "b2b_uac_fail.xml").read_text()
                                .replace("@EXPECTED@", "503"))
            caller = run_sipp("a", scenario=scenario, remote=f"127.0.0.1:{port}",
                              service="200", calls=1, timeout=15)
            await _check(caller)
            assert server.stats["shed"] == 1 and not pbx.calls

    asyncio.run(main())
