"""Typed errors. Each carries the offending input; none is ever shown to a remote peer as a trace."""

from __future__ import annotations

__all__ = ["CallHungUp", "ConfigError", "DialFailed", "ParseError", "PbxError"]


class PbxError(Exception):
    """Base class of every error pbx raises on purpose."""


class ParseError(PbxError):
    """Malformed protocol input.

    ``status_hint`` is the SIP status a server should answer with (400 by default; 413, 414, 416,
    420, 505 ... where more precise), ``data`` a bounded excerpt of the offending input.
    """

    def __init__(self, reason: str, status_hint: int = 400, data: bytes | str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        self.data: bytes | None = data[:200] if data is not None else None

    def __repr__(self) -> str:
        return f"ParseError({self.reason!r}, status_hint={self.status_hint})"


class ConfigError(PbxError):
    """A configuration file that cannot be used; names the file, line and key at fault."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.message = message
        where = path or "<config>"
        if line is not None:
            where += f":{line}"
        prefix = f"{where}: " + (f"[{key}] " if key else "")
        super().__init__(prefix + message)


class CallHungUp(PbxError):
    """The party of a call (or leg) hung up: raised by the next Call API await after that.

    ``side`` is who ended it (``caller``, ``callee`` or ``system``)."""

    def __init__(self, side: str = "caller", reason: str = "") -> None:
        super().__init__(f"{side} hung up" + (f" ({reason})" if reason else ""))
        self.side = side
        self.reason = reason


class DialFailed(PbxError):
    """No target of a ``dial()`` answered. ``status`` is the best final SIP status seen (486
    busy, 480/408 no answer, ...) or None; ``reason`` a ``pbx.events.Reason`` token."""

    def __init__(self, status: int | None, reason: str, targets: object = None) -> None:
        super().__init__(f"dial failed: {reason}" + (f" ({status})" if status else "")
                         + (f" to {targets!r}" if targets else ""))
        self.status = status
        self.reason = reason
        self.targets = targets
