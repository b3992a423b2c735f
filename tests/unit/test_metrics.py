"""Prometheus text exposition: format (checked by a strict parser), values, and call metrics."""

from __future__ import annotations

import asyncio
import math
import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pbx.events import (
    CallAnswered,
    CallEnded,
    CallStarted,
    Event,
    EventBus,
    LegEnded,
    RegistrationChanged,
)
from pbx.metrics import CONTENT_TYPE, CallMetrics, Registry, metrics_app

# A strict reader of the 0.0.4 text format ----------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_HELP = re.compile(rf"# HELP ({_NAME}) (.*)")
_TYPE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)")
_SAMPLE = re.compile(rf"({_NAME})(?:\{{(.*)\}})? (\S+)")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), text)


def parse(text: str) -> tuple[Samples, dict[str, str], dict[str, str]]:
    """(samples, help by name, type by name); fails on anything out of the format."""
    assert text.endswith("\n") and "\r" not in text
    samples: Samples = {}
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if m := _HELP.fullmatch(line):
            assert m.group(1) not in helps, f"second HELP for {m.group(1)}"
            helps[m.group(1)] = _unescape(m.group(2))
        elif m := _TYPE.fullmatch(line):
            name = m.group(1)
            assert name not in types, f"second TYPE for {name}"
            assert not any(key[0] == name for key in samples), f"TYPE after samples: {name}"
            types[name] = m.group(2)
        else:
            m = _SAMPLE.fullmatch(line)
            assert m is not None, f"not a sample line: {line!r}"
            name, labels_text, value_text = m.groups()
            assert name in types, f"sample before its TYPE: {line!r}"
            labels: list[tuple[str, str]] = []
            if labels_text:
                pos = 0
                while pos < len(labels_text):
                    pm = _PAIR.match(labels_text, pos)
                    assert pm is not None, f"bad labels in {line!r}"
                    labels.append((pm.group(1), _unescape(pm.group(2))))
                    pos = pm.end()
            assert value_text in ("+Inf", "-Inf", "NaN") or re.fullmatch(
                r"-?\d+(\.\d+)?(e[+-]?\d+)?", value_text), value_text
            key = (name, frozenset(labels))
            assert key not in samples, f"duplicate series {line!r}"
            samples[key] = float(value_text)
    return samples, helps, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


# Registry -----------------------------------------------------------------------------------------

def test_counters_gauges_and_computed_render_in_the_text_format() -> None:
    registry = Registry()
    calls = registry.counter("pbx_test_calls_total", "Calls.\nSecond line \\ here.", ["tenant"])
    calls.inc(tenant="a")
    calls.inc(2.5, tenant='we"ird\\te\nnant')
    temp = registry.gauge("pbx_test_temperature", "A gauge.")
    temp.set(21.5)
    temp.dec(0.25)
    registry.gauge("pbx_test_big", "Big.").set(2.0**60)
    registry.gauge("pbx_test_inf", "Inf.").set(math.inf)
    registry.gauge("pbx_test_nan", "NaN.").set(math.nan)
    registry.computed("pbx_test_depth", "Computed.", lambda: {("x",): 3, ("y",): 0}, ["queue"])
    registry.computed("pbx_test_seen_total", "Computed counter.", lambda: 7, kind="counter")
    registry.counter("pbx_test_unused_total", "Never incremented, labelled.", ["a"])
    text = registry.render()
    samples, helps, types = parse(text)
    assert value(samples, "pbx_test_calls_total", tenant="a") == 1
    assert value(samples, "pbx_test_calls_total", tenant='we"ird\\te\nnant') == 2.5
    assert helps["pbx_test_calls_total"] == "Calls.\nSecond line \\ here."
    assert value(samples, "pbx_test_temperature") == 21.25
    assert value(samples, "pbx_test_big") == 2.0**60
    assert value(samples, "pbx_test_inf") == math.inf
    assert math.isnan(value(samples, "pbx_test_nan"))
    assert value(samples, "pbx_test_depth", queue="x") == 3
    assert value(samples, "pbx_test_seen_total") == 7
    assert types == {"pbx_test_calls_total": "counter", "pbx_test_temperature": "gauge",
                     "pbx_test_big": "gauge", "pbx_test_inf": "gauge", "pbx_test_nan": "gauge",
                     "pbx_test_depth": "gauge", "pbx_test_seen_total": "counter",
                     "pbx_test_unused_total": "counter"}
    assert not any(k[0] == "pbx_test_unused_total" for k in samples)
    assert "pbx_test_calls_total{tenant=\"a\"} 1\n" in text          # integers print bare
    assert "pbx_test_big 1152921504606846976\n" not in text            # beyond 2**53: float
    assert Registry().render() == ""


def test_registry_and_metric_errors() -> None:
    registry = Registry()
    counter = registry.counter("x_total", "X.", ["a"])
    assert registry.counter("x_total", "X.", ["a"]) is counter        # same family: reused
    assert "x_total" in registry
    with pytest.raises(ValueError, match="already registered"):
        registry.gauge("x_total", "X.")
    with pytest.raises(ValueError, match="cannot go down"):
        counter.inc(-1, a="1")
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc(b="1")
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc()
    with pytest.raises(ValueError, match="bad metric name"):
        registry.counter("9lives", "X.")
    with pytest.raises(ValueError, match="bad label name"):
        registry.counter("y_total", "Y.", ["__reserved"])
    with pytest.raises(ValueError, match="duplicate label"):
        registry.counter("y_total", "Y.", ["a", "a"])
    with pytest.raises(ValueError, match="counter or gauge"):
        registry.computed("z", "Z.", lambda: 1, kind="histogram")
    registry.computed("w", "W.", lambda: {("1", "2"): 1}, ["a"])
    with pytest.raises(ValueError, match="does not fit"):
        registry.render()
    registry.unregister("w")
    parse(registry.render())


# Call metrics -------------------------------------------------------------------------------------

def test_call_metrics_from_the_bus() -> None:
    registry = Registry()
    bus = EventBus(queue_size=1)
    metrics = CallMetrics(registry, bus)
    events: list[Event] = [
        CallStarted(call_id="c1", at=1, tenant="acme", caller="1", callee="2"),
        CallStarted(call_id="c2", at=2, tenant="acme", caller="1", callee="3"),
        CallStarted(call_id="c3", at=3, tenant="", caller="4", callee="5"),
        CallStarted(call_id="c3", at=3, tenant="", caller="4", callee="5"),      # duplicate
        CallAnswered(call_id="c1", at=4, tenant="acme"),
        CallAnswered(call_id="c1", at=4.5, tenant="acme", leg_id="b"),           # counted once
        LegEnded(call_id="c2", at=5, tenant="acme", leg_id="b", status=486),
        CallEnded(call_id="c2", at=6, tenant="acme", side="system"),             # busy (leg)
        CallEnded(call_id="c1", at=9, tenant="acme", side="caller"),
        CallEnded(call_id="zz", at=9, tenant="other", status=480),               # unknown call
        RegistrationChanged(at=1, aor="sip:1@x", contact="sip:1@a", expires=60),
        RegistrationChanged(at=2, aor="sip:1@x", contact="sip:1@b", expires=60),
        RegistrationChanged(at=3, aor="sip:1@x", contact="sip:1@a", expires=3600),  # refresh
        RegistrationChanged(at=4, aor="sip:2@x", contact="sip:2@a", expires=60),
        RegistrationChanged(at=5, aor="sip:2@x", contact="sip:2@a", expires=0),     # removed
    ]
    for event in events:
        bus.publish(event)

    async def slow(event: Event) -> None:
        await asyncio.sleep(0)

    bus.subscribe(slow)
    bus.publish(CallStarted(call_id="c4", at=10, caller="1", callee="2"))
    bus.publish(CallEnded(call_id="c4", at=11, status=503))   # no loop: 1 queued, 1 dropped
    samples, _, types = parse(registry.render())
    assert value(samples, "pbx_calls_started_total", tenant="acme") == 2
    assert value(samples, "pbx_calls_started_total", tenant="") == 2
    assert value(samples, "pbx_calls_answered_total", tenant="acme") == 1
    assert value(samples, "pbx_calls_ended_total", tenant="acme", disposition="answered") == 1
    assert value(samples, "pbx_calls_ended_total", tenant="acme", disposition="busy") == 1
    assert value(samples, "pbx_calls_ended_total", tenant="other", disposition="no answer") == 1
    assert value(samples, "pbx_calls_ended_total", tenant="", disposition="failed") == 1
    assert value(samples, "pbx_calls_active", tenant="") == 1       # c3 is still up
    assert ("pbx_calls_active", frozenset({("tenant", "acme")})) not in samples
    assert value(samples, "pbx_registrations") == 2
    assert value(samples, "pbx_events_total", kind="registration.changed") == 5
    assert value(samples, "pbx_events_total", kind="call.started") == 5
    assert value(samples, "pbx_event_bus_dropped_total") == 1
    assert types["pbx_event_bus_dropped_total"] == "counter"
    assert types["pbx_calls_active"] == "gauge"
    assert metrics.unsubscribe is not None
    metrics.unsubscribe()
    bus.publish(CallStarted(call_id="c9", at=12, caller="1", callee="2"))
    assert metrics.started.value(tenant="") == 2


def test_metrics_app_serves_the_registry() -> None:
    registry = Registry()
    registry.counter("pbx_test_total", "T.").inc(3)

    async def main() -> tuple[int, str, str]:
        async with TestClient(TestServer(metrics_app(registry), host="127.0.0.1")) as client:
            resp = await client.get("/metrics")
            return resp.status, resp.headers["Content-Type"], await resp.text()

    status, content_type, body = asyncio.run(main())
    assert (status, content_type) == (200, CONTENT_TYPE)
    assert body == registry.render()
    samples, _, _ = parse(body)
    assert value(samples, "pbx_test_total") == 3
