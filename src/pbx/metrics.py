"""Prometheus metrics in the text exposition format (0.0.4), without a client library.

A ``Registry`` holds counters, gauges and computed metrics (a function read at each scrape, for
values that already live elsewhere: active calls, outbox depth) and ``render()`` writes them all.
``CallMetrics`` feeds the call and registration metrics from the ``EventBus``; the webhook
dispatcher adds its own. ``metrics_app(registry)`` serves ``GET /metrics`` with aiohttp until the
admin API mounts ``metrics_handler`` itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pbx.cdr import disposition_for
from pbx.events import (
    CallAnswered,
    CallEnded,
    CallStarted,
    Event,
    EventBus,
    LegEnded,
    RegistrationChanged,
)

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["CONTENT_TYPE", "CallMetrics", "Computed", "Counter", "Gauge", "Registry",
           "metrics_app", "metrics_handler"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

LabelValues = tuple[str, ...]


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class _Metric:
    """A metric family: a name, help text, label names and one value per label combination."""

    type: ClassVar[str] = "untyped"

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labels: tuple[str, ...] = tuple(labels)
        if not _NAME.fullmatch(name):
            raise ValueError(f"bad metric name {name!r}")
        for label in self.labels:
            if not _LABEL.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"bad label name {label!r} for {name}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"duplicate label names for {name}")
        self._values: dict[LabelValues, float] = {}
        if not self.labels:
            self._values[()] = 0.0   # an unlabelled series exists from the start

    def _key(self, labels: Mapping[str, object]) -> LabelValues:
        if labels.keys() != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.labels)

    @property
    def type_name(self) -> str:
        return self.type

    def value(self, **labels: object) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[tuple[LabelValues, float]]:
        return sorted(self._values.items())

    def render(self, out: list[str]) -> None:
        out.append(f"# HELP {self.name} {_escape_help(self.help)}")
        out.append(f"# TYPE {self.name} {self.type_name}")
        for values, value in self.samples():
            if values:
                pairs = ",".join(f'{n}="{_escape_label(v)}"'
                                 for n, v in zip(self.labels, values, strict=True))
                out.append(f"{self.name}{{{pairs}}} {_format_value(value)}")
            else:
                out.append(f"{self.name} {_format_value(value)}")


class Counter(_Metric):
    """A count that only goes up (name it ``..._total``)."""

    type = "counter"

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot go down ({amount})")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    """A value that goes up and down."""

    type = "gauge"

    def set(self, value: float, **labels: object) -> None:
        self._values[self._key(labels)] = float(value)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: object) -> None:
        self.inc(-amount, **labels)


class Computed(_Metric):
    """A counter or gauge read from ``fn`` at each scrape.

    ``fn`` returns the value, or (with labels) a mapping from label-value tuples to values.
    """

    def __init__(self, name: str, help: str,
                 fn: Callable[[], float | Mapping[LabelValues, float]],
                 labels: Iterable[str] = (), kind: str = "gauge") -> None:
        super().__init__(name, help, labels)
        if kind not in ("counter", "gauge"):
            raise ValueError(f"kind must be counter or gauge, not {kind!r}")
        self.kind = kind
        self.fn = fn

    def render(self, out: list[str]) -> None:
        result = self.fn()
        if isinstance(result, Mapping):
            self._values = {tuple(str(v) for v in k): float(x) for k, x in result.items()}
            for key in self._values:
                if len(key) != len(self.labels):
                    raise ValueError(f"{self.name}: {key} does not fit labels {self.labels}")
        else:
            self._values = {(): float(result)}
        super().render(out)

    @property
    def type_name(self) -> str:
        return self.kind


class Registry:
    """Metric families by name, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> None:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Counter:
        """A new counter, or the one already registered under ``name`` with the same labels."""
        existing = self._metrics.get(name)
        if isinstance(existing, Counter) and existing.labels == tuple(labels):
            return existing
        metric = Counter(name, help, labels)
        self._add(metric)
        return metric

    def gauge(self, name: str, help: str, labels: Iterable[str] = ()) -> Gauge:
        existing = self._metrics.get(name)
        if isinstance(existing, Gauge) and existing.labels == tuple(labels):
            return existing
        metric = Gauge(name, help, labels)
        self._add(metric)
        return metric

    def computed(self, name: str, help: str,
                 fn: Callable[[], float | Mapping[LabelValues, float]],
                 labels: Iterable[str] = (), kind: str = "gauge") -> Computed:
        metric = Computed(name, help, fn, labels, kind)
        self._add(metric)
        return metric

    def unregister(self, name: str) -> None:
        self._metrics.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._metrics

    def render(self) -> str:
        """Every metric in the text format, ending with a newline."""
        out: list[str] = []
        for metric in list(self._metrics.values()):
            metric.render(out)
        return "\n".join(out) + "\n" if out else ""


# Call metrics from the event bus ------------------------------------------------------------------

@dataclass(slots=True)
class _Call:
    tenant: str
    answered: bool = False
    last_status: int | None = None


class CallMetrics:
    """Call and registration metrics fed by the bus: ``CallMetrics(registry, bus)``.

    ``pbx_calls_{started,answered}_total{tenant}``, ``pbx_calls_ended_total{tenant,disposition}``
    (the disposition as the call record computes it), ``pbx_calls_active{tenant}``,
    ``pbx_registrations`` (bindings), ``pbx_events_total{kind}`` and
    ``pbx_event_bus_dropped_total``.
    """

    def __init__(self, registry: Registry, bus: EventBus | None = None) -> None:
        self._calls: dict[str, _Call] = {}
        self._bindings: set[tuple[str, str]] = set()
        self.events = registry.counter("pbx_events_total", "Events published, by kind.",
                                       ["kind"])
        self.started = registry.counter("pbx_calls_started_total", "Calls started.", ["tenant"])
        self.answered = registry.counter("pbx_calls_answered_total", "Calls answered.",
                                         ["tenant"])
        self.ended = registry.counter("pbx_calls_ended_total", "Calls ended, by disposition.",
                                      ["tenant", "disposition"])
        registry.computed("pbx_calls_active", "Calls in progress.", self._active, ["tenant"])
        registry.computed("pbx_registrations", "Registered contacts (bindings).",
                          lambda: len(self._bindings))
        self.unsubscribe: Callable[[], None] | None = None
        if bus is not None:
            registry.computed("pbx_event_bus_dropped_total",
                              "Events dropped by full subscriber queues.",
                              lambda: bus.dropped, kind="counter")
            self.unsubscribe = bus.subscribe(self)

    def _active(self) -> dict[LabelValues, float]:
        counts: dict[LabelValues, float] = {}
        for call in self._calls.values():
            counts[(call.tenant,)] = counts.get((call.tenant,), 0) + 1
        return counts

    def __call__(self, event: Event) -> None:
        self.events.inc(kind=event.kind)
        if isinstance(event, CallStarted):
            if event.call_id not in self._calls:
                self._calls[event.call_id] = _Call(event.tenant)
                self.started.inc(tenant=event.tenant)
        elif isinstance(event, CallAnswered):
            call = self._calls.get(event.call_id)
            if call is not None and not call.answered:
                call.answered = True
                self.answered.inc(tenant=call.tenant)
        elif isinstance(event, LegEnded):
            call = self._calls.get(event.call_id)
            if call is not None and event.status is not None:
                call.last_status = event.status
        elif isinstance(event, CallEnded):
            call = self._calls.pop(event.call_id, None) or _Call(event.tenant)
            status = event.status if event.status is not None else call.last_status
            disposition = disposition_for(answered=call.answered, status=status,
                                          reason=event.reason, side=event.side,
                                          override=event.disposition)
            self.ended.inc(tenant=call.tenant, disposition=disposition.value)
        elif isinstance(event, RegistrationChanged):
            binding = (event.aor, event.contact)
            if event.expires > 0:
                self._bindings.add(binding)
            else:
                self._bindings.discard(binding)


# HTTP ---------------------------------------------------------------------------------------------

def metrics_handler(registry: Registry) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler answering with ``registry.render()``."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=registry.render().encode(),
                            headers={"Content-Type": CONTENT_TYPE})

    return handler


def metrics_app(registry: Registry, path: str = "/metrics") -> web.Application:
    """A tiny aiohttp application serving ``GET path``."""
    from aiohttp import web

    app = web.Application()
    app.router.add_get(path, metrics_handler(registry))
    return app
