"""The admin HTTP API: calls, registrations, call records, live events and metrics over HTTP.

An aiohttp application that runs on the PBX's own event loop (``start_admin``). Everything it
shows or does goes through an ``AdminBackend``, which the PBX implements; the API adds
authentication, tenant scoping, strict validation and JSON errors on top.

Routes, all under ``/api/v1`` (``openapi_document()`` describes each one):

- ``GET /calls``, ``POST /calls`` (originate), ``DELETE /calls/{call_id}`` (hang up);
- ``GET /registrations``;
- ``GET /records`` (query, paged), ``GET /records/{call_id}``, ``GET /records.csv`` (streamed);
- ``GET /events``: a WebSocket of JSON events from the ``EventBus`` (``?kinds=call.*,...``);
- ``GET /metrics``: Prometheus text;
- ``GET /openapi.json``: the OpenAPI 3.1 document, the one route that needs no token.

Authentication: ``Authorization: Bearer <token>``, checked in constant time against every
configured token (``AdminConfig.tokens``: token -> tenant, ``None`` for all tenants); a missing
or unknown token is a 401 with ``WWW-Authenticate: Bearer``. A tenant's token sees only that
tenant's calls, registrations, records and events, and originates calls for that tenant.
``/metrics`` carries every tenant's figures in its labels, so it needs an all-tenant token (a
tenant's token gets 403); configure the scraper with ``authorization: {credentials: <token>}``.
With no token configured, nothing but ``/openapi.json`` is reachable.

Errors are JSON ``{"error": "..."}`` (plus ``"field"`` when one input field is at fault), never a
stack trace. Request bodies are limited to ``MAX_BODY`` bytes (413 beyond).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TextIO, cast

from aiohttp import WSCloseCode, web
from multidict import MultiMapping

from pbx.cdr import CSV_COLUMNS, CallRecord, CdrStore, Disposition
from pbx.config import AdminConfig
from pbx.events import EventBus, KindFilter, Subscription
from pbx.metrics import Registry, metrics_handler

__all__ = ["API_PREFIX", "MAX_BODY", "AdminBackend", "admin_app", "admin_port",
           "openapi_document", "start_admin"]

log = logging.getLogger("pbx.admin")

API_PREFIX = "/api/v1"
MAX_BODY = 64 * 1024                   # bytes in a request body
MAX_PAGE = 1000                        # records in one GET /records answer
DEFAULT_PAGE = 100
DEFAULT_TIMEOUT = 30.0                 # seconds an originated call rings
MAX_TIMEOUT = 3600.0
_MAX_TEXT = 256                        # characters in "to", "caller_id", "app"
_STREAM_QUEUE = 1000                   # events a WebSocket may fall behind before drops
_HEARTBEAT = 30.0                      # WebSocket ping interval, seconds
_CSV_CHUNK = 32 * 1024                 # characters per streamed CSV chunk
_CSV_AHEAD = 8                         # chunks the export thread may run ahead of the socket


def _request_key(name: str) -> Any:
    """A typed request key where aiohttp has them (3.13+), else the plain string."""
    factory = getattr(web, "RequestKey", None)
    return name if factory is None else factory(name, object)


_TENANT = _request_key("pbx.admin.tenant")         # the token's tenant (None: all tenants)
_STREAMING = _request_key("pbx.admin.streaming")   # the response is already on the wire
_ORIGINATE_FIELDS = ("to", "caller_id", "app", "data", "timeout")
_RECORD_FILTERS = ("since", "until", "caller", "callee", "dialed", "disposition", "tenant")


class AdminBackend(Protocol):
    """What the PBX gives the admin API. Tenant ``None`` means every tenant.

    ``active_calls`` and ``registrations`` return JSON-ready dicts (a ``"tenant"`` key, when
    present, is also checked by the API). ``originate`` returns the new call's id and raises
    ``ValueError`` (bad request, message shown to the client) or ``LookupError`` (unknown app).
    ``hangup`` returns False when no active call of that tenant has that id.
    """

    @property
    def bus(self) -> EventBus: ...

    @property
    def cdr(self) -> CdrStore: ...

    @property
    def metrics(self) -> Registry: ...

    def active_calls(self, tenant: str | None) -> list[dict[str, Any]]: ...

    def registrations(self, tenant: str | None) -> list[dict[str, Any]]: ...

    async def originate(self, *, to: str, caller_id: str | None, app: str | None,
                        data: dict[str, Any], timeout: float, tenant: str | None) -> str: ...

    async def hangup(self, call_id: str, tenant: str | None) -> bool: ...


# Public entry points ------------------------------------------------------------------------------

def admin_app(backend: AdminBackend, config: AdminConfig) -> web.Application:
    """The admin API as an aiohttp application (not yet listening).

    Mount or run it yourself, e.g. in tests::

        app = admin_app(pbx, AdminConfig(tokens={"s3cret": None}))
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/api/v1/calls", headers={"Authorization": "Bearer s3cret"})
    """
    api = _AdminApi(backend, config)
    app = web.Application(middlewares=[_errors, api.authenticate], client_max_size=MAX_BODY)
    p = API_PREFIX
    app.router.add_get(f"{p}/calls", api.list_calls, name="calls", allow_head=False)
    app.router.add_post(f"{p}/calls", api.originate, name="originate")
    app.router.add_delete(f"{p}/calls/{{call_id}}", api.hangup, name="hangup")
    app.router.add_get(f"{p}/registrations", api.registrations, name="registrations",
                       allow_head=False)
    app.router.add_get(f"{p}/records", api.records, name="records", allow_head=False)
    app.router.add_get(f"{p}/records.csv", api.records_csv, name="records_csv",
                       allow_head=False)
    app.router.add_get(f"{p}/records/{{call_id}}", api.record, name="record", allow_head=False)
    app.router.add_get(f"{p}/events", api.events, name="events", allow_head=False)
    app.router.add_get(f"{p}/metrics", api.metrics, name="metrics", allow_head=False)
    app.router.add_get(f"{p}/openapi.json", api.openapi, name="openapi", allow_head=False)
    app.on_shutdown.append(api.close_streams)
    return app


async def start_admin(backend: AdminBackend, config: AdminConfig) -> web.AppRunner:
    """Listen on ``config.host:config.port`` (0: any free port) on the running loop.

    Stop it with ``await runner.cleanup()``; ``admin_port(runner)`` is the port bound::

        runner = await start_admin(pbx, config.admin)
        print("admin API on port", admin_port(runner))
        ...
        await runner.cleanup()
    """
    runner = web.AppRunner(admin_app(backend, config), shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("admin API listening on %s:%d", config.host, admin_port(runner))
    return runner


def admin_port(runner: web.AppRunner) -> int:
    """The TCP port the runner's first site is bound to (what port 0 became)::

        port = admin_port(await start_admin(pbx, AdminConfig(port=0, tokens=tokens)))
    """
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the admin API is not listening")


# Errors -------------------------------------------------------------------------------------------

class _ApiError(Exception):
    """An error answered as JSON ``{"error": message, "field": field}``."""

    def __init__(self, status: int, message: str, *, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def _bad(field: str, message: str) -> _ApiError:
    return _ApiError(400, f"{field}: {message}", field=field)


def _dumps(value: Any) -> str:
    # default=str: call data from apps may hold anything; the API answers rather than fail.
    return json.dumps(value, ensure_ascii=False, default=str)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=_dumps)


def _error_response(status: int, message: str, *, field: str | None = None,
                    headers: Mapping[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    response = _json(body, status)
    response.headers.update(headers or {})
    return response


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DROP_HEADERS = frozenset({"content-type", "content-length"})


@web.middleware
async def _errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error; unexpected ones are logged, never shown."""
    try:
        response = await handler(request)
    except _ApiError as exc:
        return _error_response(exc.status, exc.message, field=exc.field, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = exc.text or ""
        message = text if text and not text.startswith(f"{exc.status}:") else exc.reason
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in _DROP_HEADERS}
        return _error_response(exc.status, message, headers=headers)
    except Exception:
        if request.get(_STREAMING):
            raise  # the status line is sent: aiohttp logs it and drops the connection
        log.exception("admin API: %s %s failed", request.method, request.path)
        return _error_response(500, "internal error")
    if not response.prepared:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


# The handlers -------------------------------------------------------------------------------------

class _AdminApi:
    """The handlers, bound to one backend and one set of tokens."""

    def __init__(self, backend: AdminBackend, config: AdminConfig) -> None:
        self.backend = backend
        # Compared as SHA-256 digests: equal lengths, so the comparison leaks no length either.
        self._tokens: tuple[tuple[bytes, str | None], ...] = tuple(
            (_digest(token), tenant) for token, tenant in config.tokens.items() if token)
        self._streams: dict[web.WebSocketResponse, Subscription] = {}

    # Auth ---------------------------------------------------------------------------------------
    @web.middleware
    async def authenticate(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Resolve the bearer token to a tenant (``request[_TENANT]``) or answer 401."""
        route = request.match_info.route
        if route.name == "openapi":
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _ApiError(401, "missing bearer token",
                            headers={"WWW-Authenticate": 'Bearer realm="pbx"'})
        given = _digest(token)
        found = False
        tenant: str | None = None
        for known, known_tenant in self._tokens:   # no early exit: time does not tell which
            if hmac.compare_digest(given, known):
                found, tenant = True, known_tenant
        if not found:
            log.info("admin API: rejected token from %s", request.remote)
            raise _ApiError(401, "invalid token", headers={
                "WWW-Authenticate": 'Bearer realm="pbx", error="invalid_token"'})
        request[_TENANT] = tenant
        return await handler(request)

    # Calls --------------------------------------------------------------------------------------
    async def list_calls(self, request: web.Request) -> web.Response:
        _params(request.query, ())
        tenant: str | None = request[_TENANT]
        return _json({"calls": _scoped(self.backend.active_calls(tenant), tenant)})

    async def originate(self, request: web.Request) -> web.Response:
        _params(request.query, ())
        tenant: str | None = request[_TENANT]
        body = await _json_body(request)
        fields = _originate_fields(body)
        try:
            call_id = await self.backend.originate(tenant=tenant, **fields)
        except LookupError as exc:
            raise _ApiError(422, _message(exc, "unknown app"), field="app") from None
        except ValueError as exc:
            raise _ApiError(400, _message(exc, "bad request")) from None
        return _json({"call_id": call_id}, 201)

    async def hangup(self, request: web.Request) -> web.Response:
        _params(request.query, ())
        call_id = request.match_info["call_id"]
        if not await self.backend.hangup(call_id, request[_TENANT]):
            raise _ApiError(404, f"no active call {call_id!r}")
        return web.Response(status=204)

    async def registrations(self, request: web.Request) -> web.Response:
        _params(request.query, ())
        tenant: str | None = request[_TENANT]
        regs = _scoped(self.backend.registrations(tenant), tenant)
        return _json({"registrations": regs})

    # Records ------------------------------------------------------------------------------------
    async def records(self, request: web.Request) -> web.Response:
        params = _params(request.query, (*_RECORD_FILTERS, "limit", "offset"))
        filters = _record_filters(params, request[_TENANT])
        limit = _int_param(params, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        offset = _int_param(params, "offset", 0, 0, 2**62)
        store = self.backend.cdr
        # Indexed queries, at most MAX_PAGE rows: quick enough for the event loop.
        records = store.query(**filters, limit=limit, offset=offset)
        return _json({"records": [_record_json(r) for r in records],
                      "total": store.count(**filters), "limit": limit, "offset": offset})

    async def record(self, request: web.Request) -> web.Response:
        _params(request.query, ())
        call_id = request.match_info["call_id"]
        tenant: str | None = request[_TENANT]
        record = self.backend.cdr.get(call_id)
        if record is None or (tenant is not None and record.tenant != tenant):
            raise _ApiError(404, f"no call record {call_id!r}")
        return _json(_record_json(record))

    async def records_csv(self, request: web.Request) -> web.StreamResponse:
        params = _params(request.query, _RECORD_FILTERS)
        filters = _record_filters(params, request[_TENANT])
        chunks = _CsvChunks(self.backend.cdr, filters)
        try:
            first = await chunks.next()   # errors before any byte is sent are still JSON
            response = web.StreamResponse(headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": 'attachment; filename="records.csv"',
                "Cache-Control": "no-store"})
            request[_STREAMING] = True
            await response.prepare(request)
            chunk: bytes | None = first
            while chunk is not None:
                await response.write(chunk)
                chunk = await chunks.next()
            await response.write_eof()
            return response
        finally:
            await chunks.close()

    # Events -------------------------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.WebSocketResponse:
        params = _params(request.query, ("kinds",))
        kinds: list[str] | None = None
        if "kinds" in params:
            kinds = [k.strip() for k in params["kinds"].split(",") if k.strip()]
            if not kinds:
                raise _bad("kinds", "name at least one event kind (or leave kinds out)")
            try:
                KindFilter(kinds)
            except ValueError as exc:
                raise _bad("kinds", str(exc)) from None
        ws = web.WebSocketResponse(heartbeat=_HEARTBEAT)
        if not ws.can_prepare(request).ok:
            raise _ApiError(426, "this is a WebSocket endpoint: send Upgrade: websocket",
                            headers={"Upgrade": "websocket"})
        tenant: str | None = request[_TENANT]
        # Subscribe before the handshake completes: the client misses nothing published
        # after its connect returns.
        sub = self.backend.bus.stream(kinds, maxsize=_STREAM_QUEUE)
        request[_STREAMING] = True
        reader: asyncio.Task[None] | None = None
        try:
            await ws.prepare(request)
            self._streams[ws] = sub
            reader = asyncio.create_task(_read_until_closed(ws, sub))
            await _send_events(ws, sub, tenant)
        except ConnectionError:
            pass  # the client went away mid-send
        finally:
            sub.close()
            self._streams.pop(ws, None)
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            if ws.prepared:
                await ws.close()
        return ws

    async def close_streams(self, app: web.Application) -> None:
        """On shutdown: end every event stream, so the server need not wait for them."""
        for ws, sub in list(self._streams.items()):
            sub.close()
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    # Metrics and the document -------------------------------------------------------------------
    async def metrics(self, request: web.Request) -> web.StreamResponse:
        if request[_TENANT] is not None:
            raise _ApiError(403, "metrics cover every tenant: use an all-tenant token")
        return await metrics_handler(self.backend.metrics)(request)

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _message(exc: BaseException, default: str) -> str:
    text = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    return text or default


def _scoped(items: list[dict[str, Any]], tenant: str | None) -> list[dict[str, Any]]:
    """What the backend gave, less anything that says it belongs to another tenant."""
    if tenant is None:
        return items
    return [item for item in items if item.get("tenant", tenant) == tenant]


# Validation ---------------------------------------------------------------------------------------

def _params(query: MultiMapping[str], allowed: Iterable[str]) -> dict[str, str]:
    """The query parameters as a dict; unknown or repeated ones are a 400 naming them."""
    allowed = tuple(allowed)
    out: dict[str, str] = {}
    for key, value in query.items():
        if key not in allowed:
            hint = f" (allowed: {', '.join(allowed)})" if allowed else " (this route takes none)"
            raise _ApiError(400, f"unknown query parameter {key!r}{hint}", field=key)
        if key in out:
            raise _bad(key, "given more than once")
        out[key] = value
    return out


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _bad(name, f"expected an integer, got {text!r}") from None
    if not low <= value <= high:
        raise _bad(name, f"must be between {low} and {high}")
    return value


def _time_param(params: Mapping[str, str], name: str) -> float | None:
    """Seconds since the epoch, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    text = params.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise _bad(name, "expected seconds since the epoch or an ISO 8601 time, "
                             f"got {text!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    if not math.isfinite(value):
        raise _bad(name, f"expected a finite number, got {text!r}")
    return value


def _record_filters(params: Mapping[str, str], tenant: str | None) -> dict[str, Any]:
    """Keyword arguments for ``CdrStore.query``/``count``/``export_csv``, tenant enforced."""
    filters: dict[str, Any] = {"since": _time_param(params, "since"),
                               "until": _time_param(params, "until")}
    for name in ("caller", "callee", "dialed"):
        filters[name] = params.get(name)
    disposition = params.get("disposition")
    if disposition is not None and disposition not in set(Disposition):
        raise _bad("disposition", f"unknown disposition {disposition!r} (one of: "
                                  f"{', '.join(d.value for d in Disposition)})")
    filters["disposition"] = disposition
    asked = params.get("tenant")
    if tenant is not None and asked is not None and asked != tenant:
        raise _ApiError(403, f"this token sees tenant {tenant!r} only", field="tenant")
    filters["tenant"] = tenant if tenant is not None else asked
    return filters


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise _ApiError(415, "send the body as Content-Type: application/json")
    raw = await request.read()          # 413 beyond client_max_size
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _ApiError(400, f"body: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise _ApiError(400, "body: expected a JSON object")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _originate_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The originate arguments from a POST /calls body; a 400 naming the field at fault."""
    for key in body:
        if key not in _ORIGINATE_FIELDS:
            raise _ApiError(400, f"unknown field {key!r} (allowed: "
                                 f"{', '.join(_ORIGINATE_FIELDS)})", field=key)
    if "to" not in body:
        raise _bad("to", "required")
    to = _text_field(body, "to")
    if to is None or not to.strip():
        raise _bad("to", "must be a non-empty string")
    data = body.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise _bad("data", "expected a JSON object")
    timeout = body.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise _bad("timeout", "expected a number of seconds")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise _bad("timeout", f"must be more than 0 and at most {MAX_TIMEOUT:g} seconds")
    return {"to": to.strip(), "caller_id": _text_field(body, "caller_id"),
            "app": _text_field(body, "app"), "data": data, "timeout": float(timeout)}


def _text_field(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(name, "expected a string")
    if len(value) > _MAX_TEXT:
        raise _bad(name, f"longer than {_MAX_TEXT} characters")
    return value


def _record_json(record: CallRecord) -> dict[str, Any]:
    """A record as JSON: the CSV columns, times as seconds since the epoch."""
    out = dataclasses.asdict(record)
    return {name: out[name] for name in CSV_COLUMNS}


# WebSocket helpers --------------------------------------------------------------------------------

async def _read_until_closed(ws: web.WebSocketResponse, sub: Subscription) -> None:
    """Drain what the client sends (it is ignored) so pings and the close handshake work."""
    try:
        async for _ in ws:
            pass
    finally:
        sub.close()


async def _send_events(ws: web.WebSocketResponse, sub: Subscription, tenant: str | None) -> None:
    dropped = 0
    async for event in sub:
        if ws.closed:
            break
        if sub.dropped != dropped:   # tell the client it lost some: it may resync from records
            await ws.send_str(_dumps({"kind": "stream.dropped", "count": sub.dropped - dropped}))
            dropped = sub.dropped
        if tenant is not None and event.tenant != tenant:
            continue
        await ws.send_str(_dumps(event.to_dict()))


# CSV export off the event loop --------------------------------------------------------------------

class _Abort(Exception):
    """The consumer went away: stop exporting."""


class _ChunkSink:
    """A write-only text file for ``csv.writer``: UTF-8 chunks passed to ``emit``.

    The first write (the header row) goes out alone so the response can start at once.
    """

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self._emit = emit
        self._parts: list[str] = []
        self._size = 0
        self._first = True

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._size += len(text)
        if self._first or self._size >= _CSV_CHUNK:
            self._first = False
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._parts:
            chunk = "".join(self._parts).encode()
            self._parts.clear()
            self._size = 0
            self._emit(chunk)


class _CsvChunks:
    """``CdrStore.export_csv`` run in a worker thread, read as chunks on the event loop.

    The thread opens its own connection to the store's file (SQLite connections stay in their
    thread; WAL lets it read while the PBX writes) and runs at most ``_CSV_AHEAD`` chunks ahead
    of the socket. An in-memory store cannot be shared, so it is exported on the loop.
    """

    def __init__(self, store: CdrStore, filters: Mapping[str, Any]) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._room = threading.Semaphore(_CSV_AHEAD)
        self._stop = threading.Event()
        self._done: asyncio.Future[None] | None = None
        if str(store.path) == ":memory:":
            sink = _ChunkSink(self._queue.put_nowait)
            store.export_csv(cast(TextIO, sink), **filters)
            sink.flush()
            self._queue.put_nowait(None)
        else:
            self._done = self._loop.run_in_executor(
                None, partial(self._export, str(store.path), dict(filters)))

    def _export(self, path: str, filters: dict[str, Any]) -> None:
        try:
            sink = _ChunkSink(self._hand_over)
            with CdrStore(path, create=False) as store:
                store.export_csv(cast(TextIO, sink), **filters)
            sink.flush()
            self._hand_over(None)
        except _Abort:
            pass
        except Exception as exc:
            with contextlib.suppress(_Abort, RuntimeError):
                self._hand_over(exc)

    def _hand_over(self, item: bytes | BaseException | None) -> None:
        """In the thread: wait for room, then queue ``item`` on the loop."""
        while not self._room.acquire(timeout=1.0):
            if self._stop.is_set() or self._loop.is_closed():
                raise _Abort
        if self._stop.is_set():
            raise _Abort
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def next(self) -> bytes | None:
        """The next chunk, None at the end; re-raises what the export raised."""
        item = await self._queue.get()
        if self._done is not None:
            self._room.release()
        if isinstance(item, BaseException):
            raise item
        return item

    async def close(self) -> None:
        """Stop the thread (if it still runs) and wait for it."""
        self._stop.set()
        self._room.release(_CSV_AHEAD)
        if self._done is not None:
            await asyncio.shield(self._done)


# The OpenAPI document -----------------------------------------------------------------------------

def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": _ref(schema)}}
    return out


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_CALL_ID = {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "The PBX's call id (the events' ``call_id``)."}
_COMMON = {"400": {"$ref": "#/components/responses/BadRequest"},
           "401": {"$ref": "#/components/responses/Unauthorized"}}
_FILTERS = [
    _query("since", "Calls that started at or after this time: seconds since the epoch or ISO "
           "8601 (UTC unless an offset is given).", {"type": "string"}),
    _query("until", "Calls that started before this time (same forms as since).",
           {"type": "string"}),
    _query("caller", "Exact caller.", {"type": "string"}),
    _query("callee", "Exact callee (the party that answered, else the routed one).",
           {"type": "string"}),
    _query("dialed", "Exact number dialed.", {"type": "string"}),
    _query("disposition", "How the call ended.",
           {"type": "string", "enum": [d.value for d in Disposition]}),
    _query("tenant", "Only this tenant's calls. A tenant's token sees its own tenant only "
           "(another one is a 403).", {"type": "string"}),
]
_TIME = {"type": ["number", "null"], "description": "Seconds since the epoch."}
_LEG_SCHEMA = {
    "type": "object",
    "properties": {
        "leg_id": {"type": "string"}, "role": {"type": "string"}, "party": {"type": "string"},
        "dialed": {"type": "string"}, "start_time": _TIME, "ring_time": _TIME,
        "answer_time": _TIME, "end_time": _TIME, "status": {"type": ["integer", "null"]},
        "reason": {"type": "string"}, "bridged_to": {"type": "string"},
    },
}
_RECORD_SCHEMA = {
    "type": "object",
    "description": "One call (pbx.cdr.CallRecord): empty text is unknown, null times never "
                   "happened.",
    "properties": {
        "call_id": {"type": "string"}, "tenant": {"type": "string"},
        "caller": {"type": "string"}, "callee": {"type": "string"},
        "dialed": {"type": "string"}, "caller_region": {"type": "string"},
        "caller_country": {"type": "string"}, "caller_province": {"type": "string"},
        "caller_city": {"type": "string"}, "caller_carrier": {"type": "string"},
        "start_time": {"type": "number"}, "ring_time": _TIME, "answer_time": _TIME,
        "end_time": _TIME,
        "duration": {"type": ["number", "null"], "description": "Seconds, start to end."},
        "billable": {"type": ["integer", "null"],
                     "description": "Whole seconds from answer to end, rounded up."},
        "disposition": {"type": "string", "enum": [d.value for d in Disposition]},
        "status": {"type": ["integer", "null"]}, "hangup_side": {"type": "string"},
        "hangup_cause": {"type": "string"},
        "path": {"type": "array", "items": {"type": "string"},
                 "description": "Rules and apps taken, as rule:branch."},
        "recording": {"type": "string"}, "data": {"type": "object"},
        "legs": {"type": "array", "items": _ref("Leg")},
    },
}

_OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "pbx admin API",
        "version": "1",
        "description": "Active calls, registrations, call records, live events and metrics. "
                       "Send Authorization: Bearer <token>; a tenant's token sees only that "
                       "tenant. Errors are JSON {\"error\": ..., \"field\"?: ...}.",
    },
    "security": [{"bearer": []}],
    "paths": {
        f"{API_PREFIX}/calls": {
            "get": {
                "operationId": "listCalls",
                "summary": "Calls in progress.",
                "responses": {"200": _answer("The active calls.", "CallList"), **_COMMON},
            },
            "post": {
                "operationId": "originate",
                "summary": "Start an outbound call.",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("OriginateRequest")}}},
                "responses": {
                    "201": _answer("The call was started.", "Originated"),
                    **_COMMON,
                    "413": _answer(f"The body is larger than {MAX_BODY} bytes.", "Error"),
                    "415": _answer("The body is not application/json.", "Error"),
                    "422": _answer("No such app.", "Error"),
                },
            },
        },
        f"{API_PREFIX}/calls/{{call_id}}": {
            "delete": {
                "operationId": "hangup",
                "summary": "Hang up a call in progress.",
                "parameters": [_CALL_ID],
                "responses": {"204": {"description": "Hanging up."}, **_COMMON,
                              "404": {"$ref": "#/components/responses/NotFound"}},
            },
        },
        f"{API_PREFIX}/registrations": {
            "get": {
                "operationId": "listRegistrations",
                "summary": "Registered contacts.",
                "responses": {"200": _answer("The bindings.", "RegistrationList"),
                              **_COMMON},
            },
        },
        f"{API_PREFIX}/records": {
            "get": {
                "operationId": "queryRecords",
                "summary": "Call records, oldest first.",
                "parameters": [
                    *_FILTERS,
                    _query("limit", f"Records per page (default {DEFAULT_PAGE}).",
                           {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                    _query("offset", "Records to skip.", {"type": "integer", "minimum": 0}),
                ],
                "responses": {"200": _answer("One page of records.", "RecordPage"),
                              **_COMMON,
                              "403": {"$ref": "#/components/responses/Forbidden"}},
            },
        },
        f"{API_PREFIX}/records/{{call_id}}": {
            "get": {
                "operationId": "getRecord",
                "summary": "One call record.",
                "parameters": [_CALL_ID],
                "responses": {"200": _answer("The record.", "CallRecord"), **_COMMON,
                              "404": {"$ref": "#/components/responses/NotFound"}},
            },
        },
        f"{API_PREFIX}/records.csv": {
            "get": {
                "operationId": "exportRecords",
                "summary": "Call records as CSV (as pbx cdr export writes them), streamed.",
                "parameters": _FILTERS,
                "responses": {
                    "200": {"description": "CSV with a header row; times in ISO 8601 UTC; "
                                           "path, data and legs as JSON.",
                            "content": {"text/csv": {"schema": {"type": "string"}}}},
                    **_COMMON,
                    "403": {"$ref": "#/components/responses/Forbidden"},
                },
            },
        },
        f"{API_PREFIX}/events": {
            "get": {
                "operationId": "streamEvents",
                "summary": "A WebSocket of live events, one JSON text message each.",
                "description": "Each message is an event's to_dict() (see the Event schema), "
                               "in publish order. A message of kind stream.dropped with a "
                               "count says events were lost because the client read too "
                               "slowly. A tenant's token gets that tenant's events only.",
                "parameters": [_query(
                    "kinds", "Comma-separated event kinds or prefixes, e.g. "
                             "call.*,rule.matched (default: every kind).",
                    {"type": "string"})],
                "responses": {
                    "101": {"description": "Switching to the WebSocket protocol."},
                    **_COMMON,
                    "426": _answer("Not a WebSocket handshake.", "Error"),
                },
            },
        },
        f"{API_PREFIX}/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text exposition format 0.0.4).",
                "description": "Needs an all-tenant token: the labels cover every tenant.",
                "responses": {
                    "200": {"description": "The metrics.",
                            "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "403": {"$ref": "#/components/responses/Forbidden"},
                },
            },
        },
        f"{API_PREFIX}/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI document.",
                                      "content": {"application/json": {
                                          "schema": {"type": "object"}}}}},
            },
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {
            "BadRequest": _answer("A parameter or field is wrong; field names it.", "Error"),
            "Unauthorized": {"description": "No token, or an unknown one.",
                             "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                             "content": {"application/json": {"schema": _ref("Error")}}},
            "Forbidden": _answer("The token's tenant may not see this.", "Error"),
            "NotFound": _answer("No such call or record (for this token).", "Error"),
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"},
                "field": {"type": "string", "description": "The input at fault."}}},
            "Call": {"type": "object", "description": "An active call, as the PBX shows it.",
                     "additionalProperties": True},
            "CallList": {"type": "object", "required": ["calls"], "properties": {
                "calls": {"type": "array", "items": _ref("Call")}}},
            "Registration": {"type": "object", "description": "A registered contact.",
                             "additionalProperties": True},
            "RegistrationList": {"type": "object", "required": ["registrations"],
                                 "properties": {"registrations": {
                                     "type": "array", "items": _ref("Registration")}}},
            "OriginateRequest": {
                "type": "object", "required": ["to"], "additionalProperties": False,
                "properties": {
                    "to": {"type": "string", "minLength": 1, "maxLength": _MAX_TEXT,
                           "description": "Who to call (number, extension or SIP URI)."},
                    "caller_id": {"type": ["string", "null"], "maxLength": _MAX_TEXT},
                    "app": {"type": ["string", "null"], "maxLength": _MAX_TEXT,
                            "description": "The app that runs the call once answered."},
                    "data": {"type": ["object", "null"],
                             "description": "Call-associated data."},
                    "timeout": {"type": "number", "exclusiveMinimum": 0,
                                "maximum": MAX_TIMEOUT, "default": DEFAULT_TIMEOUT,
                                "description": "Seconds to ring."},
                },
            },
            "Originated": {"type": "object", "required": ["call_id"],
                           "properties": {"call_id": {"type": "string"}}},
            "Leg": _LEG_SCHEMA,
            "CallRecord": _RECORD_SCHEMA,
            "RecordPage": {"type": "object",
                           "required": ["records", "total", "limit", "offset"],
                           "properties": {
                               "records": {"type": "array", "items": _ref("CallRecord")},
                               "total": {"type": "integer",
                                         "description": "Records matching, all pages."},
                               "limit": {"type": "integer"}, "offset": {"type": "integer"}}},
            "Event": {"type": "object", "required": ["kind", "call_id", "at", "tenant"],
                      "description": "pbx.events: kind (call.started, call.ended, "
                                     "rule.matched, ...) then the event's fields.",
                      "additionalProperties": True,
                      "properties": {"kind": {"type": "string"},
                                     "call_id": {"type": "string"},
                                     "at": {"type": "number"},
                                     "tenant": {"type": "string"}}},
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the admin API (a fresh copy), as served at
    ``/api/v1/openapi.json``::

        paths = openapi_document()["paths"]     # {"/api/v1/calls": {"get": ..., "post": ...}}
    """
    return copy.deepcopy(_OPENAPI)
