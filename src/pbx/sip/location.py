"""Registrar bindings (RFC 3261 §10, RFC 5626 outbound, RFC 3327 Path) and where they are kept.

``Binding`` is plain data; ``LocationStore`` is the async seam the registrar writes through
(memory here, SQLite in ``pbx.store``, a shared store for clusters later). A store replaces the
whole binding set of an address-of-record at once, so the registrar's pure decision stays the
single source of truth for what an AoR's bindings are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

__all__ = ["Binding", "LocationStore", "MemoryLocationStore", "check_aor"]


@dataclass(slots=True)
class Binding:
    """One Contact registered for an address-of-record.

    ``expires_at`` is absolute (epoch seconds). ``source`` is the flow the REGISTER came in on
    (``"udp:192.0.2.1:5060"``), so requests can reach a UA behind NAT over the same flow.
    ``instance`` and ``reg_id`` are the RFC 5626 ``+sip.instance`` and ``reg-id``; ``path`` the
    RFC 3327 Path header values, in order.
    """

    aor: str
    contact: str
    expires_at: float
    q: float
    call_id: str
    cseq: int
    source: str | None
    instance: str | None
    reg_id: int | None
    path: tuple[str, ...] = ()


class LocationStore(Protocol):
    """Persistent bindings, keyed by address-of-record."""

    async def load(self, aor: str) -> list[Binding]:
        """The stored bindings of ``aor`` (expired ones included), in saved order."""
        ...

    async def save(self, aor: str, bindings: list[Binding]) -> None:
        """Replace every binding of ``aor``; an empty list deletes the AoR.

        Raises ``ValueError`` if a binding belongs to another AoR.
        """
        ...

    async def save_many(self, items: Mapping[str, list[Binding]]) -> None:
        """``save`` for several AoRs at once (one transaction where the store has them)."""
        ...

    async def all_aors(self) -> list[str]:
        """Every AoR with at least one stored binding."""
        ...

    async def purge_expired(self, now: float) -> int:
        """Delete bindings with ``expires_at <= now``; returns how many were deleted."""
        ...

    async def close(self) -> None:
        """Release resources; idempotent."""
        ...


def check_aor(aor: str, bindings: list[Binding]) -> None:
    """Raise ``ValueError`` unless every binding belongs to ``aor`` (a caller bug otherwise)."""
    for b in bindings:
        if b.aor != aor:
            raise ValueError(f"binding for {b.aor!r} saved under {aor!r}")


class MemoryLocationStore:
    """A ``LocationStore`` in a dict. Copies on the way in and out, like a real store would."""

    def __init__(self) -> None:
        self._data: dict[str, list[Binding]] = {}

    async def load(self, aor: str) -> list[Binding]:
        return [replace(b) for b in self._data.get(aor, ())]

    async def save(self, aor: str, bindings: list[Binding]) -> None:
        check_aor(aor, bindings)
        if bindings:
            self._data[aor] = [replace(b) for b in bindings]
        else:
            self._data.pop(aor, None)

    async def save_many(self, items: Mapping[str, list[Binding]]) -> None:
        for aor, bindings in items.items():
            check_aor(aor, bindings)
        for aor, bindings in items.items():
            await self.save(aor, bindings)

    async def all_aors(self) -> list[str]:
        return sorted(self._data)

    async def purge_expired(self, now: float) -> int:
        removed = 0
        for aor in list(self._data):
            bindings = self._data[aor]
            live = [b for b in bindings if b.expires_at > now]
            removed += len(bindings) - len(live)
            if live:
                self._data[aor] = live
            else:
                del self._data[aor]
        return removed

    async def close(self) -> None:
        return None
