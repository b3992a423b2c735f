"""Conference mixer: exact sums, saturation, mute/deaf/whisper, tick-boundary changes, C kernel API."""

from __future__ import annotations

import functools
from collections.abc import Hashable

import numpy as np
import pytest

from pbx import _dsp  # the C build itself, also under PBX_NO_EXTENSIONS=1
from pbx.media import mixer
from pbx.media.mixer import DEAF, MUTED, Conference, MixKernel, c_mix_rows, py_mix_rows

C_KERNEL: MixKernel = functools.partial(c_mix_rows, ffi=_dsp.ffi, lib=_dsp.lib)
KERNELS = pytest.mark.parametrize("kernel", [py_mix_rows, C_KERNEL], ids=["py", "c"])


def f(*values: int) -> np.ndarray:
    return np.array(values, np.int16)


def conf(kernel: MixKernel, *pids: Hashable, samples: int = 3) -> Conference:
    c = Conference(8000, samples, kernel=kernel)
    for p in pids:
        c.join(p)
    return c


def as_lists(out: dict[Hashable, np.ndarray]) -> dict[Hashable, list[int]]:
    return {k: v.tolist() for k, v in out.items()}


def test_live_kernel_matches_implementation() -> None:
    expected = c_mix_rows if mixer.IMPLEMENTATION == "c" else py_mix_rows
    assert mixer.mix_rows is expected
    assert mixer.IMPLEMENTATION in ("c", "py")


@KERNELS
def test_two_parties_hear_each_other(kernel: MixKernel) -> None:
    c = conf(kernel, "a", "b")
    out = c.mix({"a": f(1, -2, 3), "b": f(100, 200, -300)})
    assert as_lists(out) == {"a": [100, 200, -300], "b": [1, -2, 3]}


@KERNELS
def test_three_parties_get_sum_of_the_others(kernel: MixKernel) -> None:
    c = conf(kernel, 1, 2, 3)
    out = c.mix({1: f(1, 2, 3), 2: f(10, 20, 30), 3: f(100, 200, 300)})
    assert as_lists(out) == {1: [110, 220, 330], 2: [101, 202, 303], 3: [11, 22, 33]}


@KERNELS
def test_saturation_both_ways(kernel: MixKernel) -> None:
    c = conf(kernel, "a", "b", "c")
    out = c.mix({"a": f(30000, -30000, 32767), "b": f(30000, -30000, -32768),
                 "c": f(-1, 1, 0)})
    assert out["a"].tolist() == [29999, -29999, -32768]
    assert out["c"].tolist() == [32767, -32768, -1]
    assert out["b"].tolist() == [29999, -29999, 32767]


@KERNELS
def test_saturation_uses_the_exact_sum_not_a_running_clip(kernel: MixKernel) -> None:
    # 30000 + 30000 - 30000 = 30000: clipping after each addition would give 2767.
    c = conf(kernel, "a", "b", "c", "d", samples=1)
    out = c.mix({"a": f(30000), "b": f(30000), "c": f(-30000), "d": f(0)})
    assert out["d"].tolist() == [30000]


@KERNELS
def test_muted_contributes_nothing_but_still_hears(kernel: MixKernel) -> None:
    c = conf(kernel, "a", "b", "c")
    c.mute("b")
    out = c.mix({"a": f(1, 1, 1), "b": f(50, 50, 50), "c": f(7, 7, 7)})
    assert as_lists(out) == {"a": [7, 7, 7], "b": [8, 8, 8], "c": [1, 1, 1]}
    c.unmute("b")
    out = c.mix({"a": f(1, 1, 1), "b": f(50, 50, 50), "c": f(7, 7, 7)})
    assert out["a"].tolist() == [57, 57, 57]


@KERNELS
def test_deaf_gets_no_output_but_is_heard(kernel: MixKernel) -> None:
    c = Conference(8000, 2, kernel=kernel)
    c.join("a")
    c.join("b", deaf=True)
    c.join("c", muted=True)
    out = c.mix({"a": f(1, 2), "b": f(3, 4), "c": f(5, 6)})
    assert as_lists(out) == {"a": [3, 4], "c": [4, 6]}
    c.undeafen("b")
    c.deafen("a")
    out = c.mix({"a": f(1, 2), "b": f(3, 4), "c": f(5, 6)})
    assert as_lists(out) == {"b": [1, 2], "c": [4, 6]}


@KERNELS
def test_missing_or_none_input_is_silence_and_strangers_are_ignored(kernel: MixKernel) -> None:
    c = conf(kernel, "a", "b", "c")
    out = c.mix({"a": f(1, 2, 3), "b": None, "zz": f(9, 9, 9)})
    assert as_lists(out) == {"a": [0, 0, 0], "b": [1, 2, 3], "c": [1, 2, 3]}


@KERNELS
def test_three_party_whisper(kernel: MixKernel) -> None:
    # Agent A, customer B, supervisor C whispering to A.
    c = conf(kernel, "A", "B", "C")
    frames = {"A": f(1, 2, 3), "B": f(10, 20, 30), "C": f(100, 200, 300)}
    c.whisper("C", to="A")
    out = c.mix(frames)
    assert as_lists(out) == {"A": [110, 220, 330], "B": [1, 2, 3], "C": [11, 22, 33]}
    c.whisper("C", None)
    out = c.mix(frames)
    assert as_lists(out) == {"A": [110, 220, 330], "B": [101, 202, 303], "C": [11, 22, 33]}


@KERNELS
def test_several_whisperers_and_mutual_whispers(kernel: MixKernel) -> None:
    c = conf(kernel, "a", "b", "c", "d", samples=1)
    frames = {"a": f(1), "b": f(10), "c": f(100), "d": f(1000)}
    c.whisper("c", to="a")
    c.whisper("d", to="a")
    assert as_lists(c.mix(frames)) == {"a": [1110], "b": [1], "c": [11], "d": [11]}
    c.whisper("a", to="c")  # a whispers to c while c whispers to a
    assert as_lists(c.mix(frames)) == {"a": [1110], "b": [0], "c": [11], "d": [10]}


@KERNELS
def test_whisper_to_a_deaf_or_departed_target_reaches_nobody(kernel: MixKernel) -> None:
    c = conf(kernel, "a", "b", "c", samples=1)
    frames = {"a": f(1), "b": f(10), "c": f(100)}
    c.whisper("c", to="a")
    c.deafen("a")
    assert as_lists(c.mix(frames)) == {"b": [1], "c": [11]}
    c.undeafen("a")
    c.leave("a")
    assert as_lists(c.mix(frames)) == {"b": [0], "c": [10]}
    assert c.members["c"].whisper_to == "a"
    c.join("a")
    assert as_lists(c.mix(frames)) == {"a": [110], "b": [1], "c": [11]}


@KERNELS
def test_muted_whisperer_is_silent(kernel: MixKernel) -> None:
    c = conf(kernel, "a", "b", "c", samples=1)
    c.whisper("c", to="a")
    c.mute("c")
    assert as_lists(c.mix({"a": f(1), "b": f(10), "c": f(100)})) == {
        "a": [10], "b": [1], "c": [11]}


def test_changes_apply_at_the_next_tick_in_order() -> None:
    c = Conference(8000, 1)
    c.join("a")
    assert "a" not in c and len(c) == 0 and c.pending == 1
    c.join("b")
    c.mute("b")
    c.unmute("b")
    c.leave("a")
    c.join("a", muted=True)
    assert c.members == {}
    out = c.mix({"a": f(5), "b": f(7)})
    assert c.pending == 0
    assert list(c.members) == ["b", "a"]
    assert c.members["a"].muted and not c.members["b"].muted
    assert as_lists(out) == {"b": [0], "a": [7]}


def test_validation_sees_queued_changes() -> None:
    c = Conference(8000, 2)
    c.join("a")
    with pytest.raises(ValueError):
        c.join("a")
    with pytest.raises(KeyError):
        c.leave("zz")
    with pytest.raises(KeyError):
        c.whisper("a", to="zz")
    with pytest.raises(ValueError):
        c.whisper("a", to="a")
    c.leave("a")
    with pytest.raises(KeyError):
        c.mute("a")
    c.join("a")
    c.mix({})
    with pytest.raises(ValueError):
        c.mix({"a": np.zeros(3, np.int16)})
    with pytest.raises(ValueError):
        c.mix({"a": np.zeros(2, np.int32)})
    with pytest.raises(ValueError):
        Conference(8000, 0)


def test_outputs_are_fresh_arrays() -> None:
    c = Conference(8000, 2)
    c.join("a")
    c.join("b")
    first = c.mix({"a": f(1, 1), "b": f(2, 2)})
    second = c.mix({"a": f(3, 3), "b": f(4, 4)})
    assert first["a"].tolist() == [2, 2] and second["a"].tolist() == [4, 4]


def test_empty_conference() -> None:
    assert Conference().mix({}) == {}


# --- the C API itself -------------------------------------------------------------------


def _ptrs(rows: list[np.ndarray | None], ctype: str) -> object:
    ffi = _dsp.ffi
    return ffi.new(f"{ctype} *[]", [ffi.NULL if r is None else ffi.from_buffer(f"{ctype}[]", r)
                                    for r in rows])


def test_c_rows_leave_deaf_rows_untouched() -> None:
    inp = np.array([[1, 2], [3, 4], [5, 6]], np.int16)
    out = np.full((3, 2), 777, np.int16)
    C_KERNEL(inp, out, np.array([0, DEAF, MUTED], np.uint8), np.full(3, -1, np.int32))
    assert out.tolist() == [[3, 4], [777, 777], [4, 6]]


def test_c_ptrs_null_input_is_silence_and_null_output_is_skipped() -> None:
    ffi, lib = _dsp.ffi, _dsp.lib
    a, b, c = f(1, 2), f(10, 20), f(100, 200)
    oa, oc = np.zeros(2, np.int16), np.zeros(2, np.int16)
    flags = np.zeros(4, np.uint8)
    whisper = np.array([-1, -1, -1, 1], np.int32)  # d (no input) whispers to b: harmless
    work = ffi.new("int32_t[]", 8)
    rc = lib.pbx_mix_ptrs(_ptrs([a, b, c, None], "const int16_t"),
                          _ptrs([oa, None, oc, None], "int16_t"),
                          ffi.from_buffer("uint8_t[]", flags),
                          ffi.from_buffer("int32_t[]", whisper), 4, 2, work)
    assert rc == 0
    assert oa.tolist() == [110, 220] and oc.tolist() == [11, 22]


def test_c_rejects_bad_arguments_without_writing() -> None:
    ffi, lib = _dsp.ffi, _dsp.lib
    n = lib.PBX_MIX_LOCAL_PARTIES + 1     # beyond the kernel's own whisper scratch
    inp = np.ones((n, 2), np.int16)
    inp[0] = 3
    out = np.full((n, 2), 5, np.int16)
    flags = np.zeros(n, np.uint8)
    whisper = np.full(n, -1, np.int32)
    whisper[0] = 1
    args = (ffi.from_buffer("int16_t[]", inp), ffi.from_buffer("int16_t[]", out), 2,
            ffi.from_buffer("uint8_t[]", flags), ffi.from_buffer("int32_t[]", whisper))
    assert lib.pbx_mix_rows(*args, n, 2, ffi.NULL) == -1          # whispering needs work space
    assert lib.pbx_mix_rows(*args, lib.PBX_MIX_MAX_PARTIES + 1, 2, ffi.NULL) == -1
    assert (out == 5).all()
    assert lib.pbx_mix_rows(*args, 3, 2, ffi.NULL) == 0           # small: own scratch
    assert out[:3].tolist() == [[2, 2], [4, 4], [1, 1]] and (out[3:] == 5).all()
    assert lib.pbx_mix_rows(*args[:4], ffi.NULL, n, 2, ffi.NULL) == 0   # no whisper array
    assert out[0].tolist() == [n - 1] * 2 and (out[1:] == n + 1).all()
    assert (lib.PBX_MIX_MUTED, lib.PBX_MIX_DEAF) == (MUTED, DEAF)


def test_large_conference_with_whispers_c_equals_python() -> None:
    rng = np.random.default_rng(5)
    n = 600
    inp = rng.integers(-100, 100, (n, 160)).astype(np.int16)
    flags = rng.choice([0, MUTED, DEAF], n).astype(np.uint8)
    whisper = np.where(rng.random(n) < 0.2, rng.integers(0, n, n), -1).astype(np.int32)
    out_c, out_py = np.zeros_like(inp), np.zeros_like(inp)
    C_KERNEL(inp, out_c, flags, whisper)
    py_mix_rows(inp, out_py, flags, whisper)
    assert np.array_equal(out_c, out_py)
    assert out_c.any()


def test_python_twin_validates_shapes() -> None:
    inp = np.zeros((2, 3), np.int16)
    with pytest.raises(ValueError):
        py_mix_rows(inp, np.zeros((2, 2), np.int16), np.zeros(2, np.uint8),
                    np.full(2, -1, np.int32))
    with pytest.raises(ValueError):
        py_mix_rows(inp, inp.copy(), np.zeros(3, np.uint8), np.full(2, -1, np.int32))
