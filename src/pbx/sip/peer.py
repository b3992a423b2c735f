"""Transport-level addresses: where a message came from and where to send one."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Peer"]


class Peer(NamedTuple):
    """A transport (``udp``, ``tcp``, ``tls``), a bare host (no IPv6 brackets) and a port."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        """Stream transports: no retransmission timers (RFC 3261 §17)."""
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"
