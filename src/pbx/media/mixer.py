"""N-party conference mixing: each listener hears the saturated sum of the others, never itself.

Each tick costs O(N): one int32 total of every audible participant, then per listener
``clip(total - own)``. A whisperer is left out of the total and added only to its target's sum.
``mix_rows`` is the kernel (C ``pbx_mix_rows`` from ``cext/mix.c`` when built, else
``py_mix_rows``, the numpy reference it is checked against). ``Conference`` keeps membership and
flags; every change is queued and takes effect at the start of the next ``mix`` call, so a frame
is never mixed with half of a change.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pbx.media._native import IMPLEMENTATION as _IMPL
from pbx.media._native import ffi as _ffi
from pbx.media._native import lib as _lib

__all__ = [
    "DEAF",
    "IMPLEMENTATION",
    "MAX_PARTICIPANTS",
    "MUTED",
    "Conference",
    "Participant",
    "c_mix_rows",
    "mix_rows",
    "py_mix_rows",
]

MUTED = 1
"""Flag: contributes nothing this tick (muted, or no input)."""
DEAF = 2
"""Flag: receives nothing; its output row is left untouched."""
MAX_PARTICIPANTS = 65535
"""Above this an int32 partial sum could overflow."""

IMPLEMENTATION: str = _IMPL
_LOCAL_PARTIES = 256  # PBX_MIX_LOCAL_PARTIES in cext/mix.h

Int16Array = npt.NDArray[np.int16]
MixKernel = Callable[[Int16Array, Int16Array, "npt.NDArray[np.uint8]", "npt.NDArray[np.int32]"],
                     None]


_I16, _U8, _I32 = np.dtype(np.int16), np.dtype(np.uint8), np.dtype(np.int32)


def _check_rows(inp: Int16Array, out: Int16Array, flags: npt.NDArray[np.uint8],
                whisper_to: npt.NDArray[np.int32]) -> None:
    shape = inp.shape
    if len(shape) != 2 or inp.dtype != _I16 or out.dtype != _I16 or out.shape != shape:
        raise ValueError("inp and out must be int16 arrays of the same (n, samples) shape")
    n = shape[0]
    if flags.dtype != _U8 or flags.shape != (n,):
        raise ValueError("flags must be uint8 of shape (n,)")
    if whisper_to.dtype != _I32 or whisper_to.shape != (n,):
        raise ValueError("whisper_to must be int32 of shape (n,)")
    if n > MAX_PARTICIPANTS:
        raise ValueError(f"at most {MAX_PARTICIPANTS} participants")


def py_mix_rows(inp: Int16Array, out: Int16Array, flags: npt.NDArray[np.uint8],
                whisper_to: npt.NDArray[np.int32]) -> None:
    """Mix one tick: row ``i`` of ``inp`` is participant ``i``'s frame, row ``j`` of ``out`` what
    listener ``j`` hears. The reference for ``pbx_mix_rows``.

    Participant ``i`` contributes unless ``flags[i] & MUTED``. ``whisper_to[i] >= 0`` takes it out
    of the common sum; its audio then reaches listener ``whisper_to[i]`` only (nobody when that is
    out of range or ``i`` itself). Rows of DEAF listeners are not written.
    """
    _check_rows(inp, out, flags, whisper_to)
    n = inp.shape[0]
    if n == 0:
        return
    wide = inp.astype(np.int32)
    contributes = (flags & MUTED) == 0
    whispering = whisper_to >= 0
    common = contributes & ~whispering
    total = wide[common].sum(axis=0, dtype=np.int32)
    heard = np.broadcast_to(total, wide.shape).copy()
    heard[common] -= wide[common]
    idx = np.arange(n)
    whisper = contributes & whispering & (whisper_to < n) & (whisper_to != idx)
    if whisper.any():
        np.add.at(heard, whisper_to[whisper], wide[whisper])
    listens = (flags & DEAF) == 0
    out[listens] = np.clip(heard[listens], -32768, 32767).astype(np.int16)


def c_mix_rows(inp: Int16Array, out: Int16Array, flags: npt.NDArray[np.uint8],
               whisper_to: npt.NDArray[np.int32], *, ffi: Any = _ffi, lib: Any = _lib) -> None:
    """``py_mix_rows`` done by the C kernel ``pbx_mix_rows``.

    ``ffi``/``lib`` default to the live build; tests pass ``pbx._dsp`` explicitly so the C code is
    checked even when ``PBX_NO_EXTENSIONS=1`` selects the twins.
    """
    if lib is None:
        raise RuntimeError("the C kernels are not available (PBX_NO_EXTENSIONS or no build)")
    _check_rows(inp, out, flags, whisper_to)
    if not (inp.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError("inp and out must be C-contiguous")
    n, samples = inp.shape
    # Up to PBX_MIX_LOCAL_PARTIES the kernel has its own whisper scratch.
    work = ffi.new("int32_t[]", 2 * n) if n > _LOCAL_PARTIES else ffi.NULL
    rc = lib.pbx_mix_rows(ffi.from_buffer("int16_t[]", inp),
                          ffi.from_buffer("int16_t[]", out, require_writable=True), samples,
                          ffi.from_buffer("uint8_t[]", flags),
                          ffi.from_buffer("int32_t[]", whisper_to), n, samples, work)
    if rc != 0:  # pragma: no cover - arguments were checked above
        raise ValueError("pbx_mix_rows rejected its arguments")


mix_rows: MixKernel = c_mix_rows if _lib is not None else py_mix_rows
"""The live kernel: C when built and enabled, else the numpy twin."""


@dataclass(frozen=True, slots=True)
class Participant:
    """One member's applied state. ``whisper_to`` is the only listener who hears it, or None."""

    pid: Hashable
    muted: bool = False
    deaf: bool = False
    whisper_to: Hashable | None = None


class Conference:
    """Members keyed by any hashable id; ``mix`` once per tick.

    ``join``/``leave``/``mute``/``unmute``/``deafen``/``undeafen``/``whisper`` validate against the
    state as it will be once every queued change is applied, then queue; ``mix`` applies the
    queue first, so changes take effect exactly at a tick boundary.

    Deaf listeners get no entry in ``mix``'s result. A whisper whose target leaves stays in place
    and is heard by nobody (a supervisor must not suddenly be heard by the customer) until changed
    with ``whisper(pid, None)`` or a new target, or the target rejoins under the same id.
    """

    def __init__(self, rate: int = 8000, frame_samples: int = 160, *,
                 kernel: MixKernel | None = None) -> None:
        if rate <= 0 or frame_samples <= 0:
            raise ValueError("rate and frame_samples must be positive")
        self.rate = rate
        self.frame_samples = frame_samples
        self._kernel: MixKernel = kernel or mix_rows
        self._members: dict[Hashable, Participant] = {}   # applied, in join order
        self._future: dict[Hashable, Participant] = {}    # after the queue is applied
        self._queue: list[tuple[Hashable, Participant | None]] = []
        self._order: list[Hashable] = []
        self._flags = np.zeros(0, np.uint8)
        self._live: list[int] = []                        # slots of unmuted members
        self._listeners: list[tuple[int, Hashable]] = []  # (slot, pid) of members not deaf
        self._whisper = np.zeros(0, np.int32)

    # -- changes (queued) ------------------------------------------------------------------

    def join(self, pid: Hashable, *, muted: bool = False, deaf: bool = False) -> None:
        """Add ``pid`` at the next tick. ValueError if it is (or will be) a member already."""
        if pid in self._future:
            raise ValueError(f"{pid!r} is already in the conference")
        if len(self._future) >= MAX_PARTICIPANTS:
            raise ValueError(f"at most {MAX_PARTICIPANTS} participants")
        self._set(Participant(pid, muted=muted, deaf=deaf))

    def leave(self, pid: Hashable) -> None:
        """Remove ``pid`` at the next tick. KeyError if it is not (or no longer) a member."""
        self._get(pid)
        del self._future[pid]
        self._queue.append((pid, None))

    def mute(self, pid: Hashable) -> None:
        """Stop ``pid`` being heard from the next tick."""
        self._update(pid, muted=True)

    def unmute(self, pid: Hashable) -> None:
        """Let ``pid`` be heard again from the next tick."""
        self._update(pid, muted=False)

    def deafen(self, pid: Hashable) -> None:
        """Stop mixing for ``pid`` from the next tick (no output entry)."""
        self._update(pid, deaf=True)

    def undeafen(self, pid: Hashable) -> None:
        """Mix for ``pid`` again from the next tick."""
        self._update(pid, deaf=False)

    def whisper(self, pid: Hashable, to: Hashable | None) -> None:
        """From the next tick ``pid`` is heard by ``to`` only; ``to=None`` ends the whisper.

        ``pid`` itself keeps hearing everyone as before. ``to`` must be a member (now or once
        the queue is applied) other than ``pid``.
        """
        if to is not None:
            if to == pid:
                raise ValueError("a participant cannot whisper to itself")
            self._get(to)
        self._update(pid, whisper_to=to)

    def _get(self, pid: Hashable) -> Participant:
        try:
            return self._future[pid]
        except KeyError:
            raise KeyError(f"{pid!r} is not in the conference") from None

    def _update(self, pid: Hashable, **changes: Any) -> None:
        old = self._get(pid)
        self._set(Participant(pid, muted=changes.get("muted", old.muted),
                              deaf=changes.get("deaf", old.deaf),
                              whisper_to=changes.get("whisper_to", old.whisper_to)))

    def _set(self, p: Participant) -> None:
        self._future[p.pid] = p
        self._queue.append((p.pid, p))

    # -- state -----------------------------------------------------------------------------

    @property
    def members(self) -> Mapping[Hashable, Participant]:
        """The applied state (what the last ``mix`` used), in join order."""
        return dict(self._members)

    @property
    def pending(self) -> int:
        """Number of queued changes not applied yet."""
        return len(self._queue)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, pid: object) -> bool:
        return pid in self._members

    def _apply(self) -> None:
        for pid, p in self._queue:
            if p is None:
                del self._members[pid]
            else:
                self._members[pid] = p
        self._queue.clear()
        self._order = list(self._members)
        slot = {pid: i for i, pid in enumerate(self._order)}
        ps = self._members.values()
        self._flags = np.array([(DEAF if p.deaf else 0) | (MUTED if p.muted else 0) for p in ps],
                               np.uint8)
        self._live = [i for i, p in enumerate(ps) if not p.muted]
        self._listeners = [(i, p.pid) for i, p in enumerate(ps) if not p.deaf]
        # A whisper to an absent target keeps the whisperer out of the common sum: index n
        # (out of range) means "heard by nobody".
        n = len(self._order)
        self._whisper = np.array([-1 if p.whisper_to is None else slot.get(p.whisper_to, n)
                                  for p in ps], np.int32)

    # -- the tick --------------------------------------------------------------------------

    def mix(self, inputs: Mapping[Hashable, Int16Array | None]) -> dict[Hashable, Int16Array]:
        """Apply queued changes, then mix one frame.

        ``inputs[pid]`` is pid's int16 frame of ``frame_samples``; a missing pid or None is
        silence, ids that are not members are ignored. Returns a fresh frame for every member
        that is not deaf.
        """
        if self._queue:
            self._apply()
        n = len(self._order)
        fs = self.frame_samples
        inp = np.zeros((n, fs), np.int16)
        flags = self._flags
        order = self._order
        silent: list[int] = []
        for i in self._live:
            frame = inputs.get(order[i])
            if frame is None:
                silent.append(i)
            elif frame.dtype != np.int16 or frame.shape != (fs,):
                raise ValueError(f"frame for {order[i]!r} must be int16 of shape ({fs},), "
                                 f"got {frame.dtype} {frame.shape}")
            else:
                inp[i] = frame
        if silent:
            flags = flags.copy()
            flags[silent] |= MUTED
        out = np.empty((n, fs), np.int16)
        self._kernel(inp, out, flags, self._whisper)
        return {pid: out[i] for i, pid in self._listeners}
