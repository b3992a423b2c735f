"""Mixer properties: C kernel == numpy twin == a brute-force model; own audio never returned;
whispers reach only their target; saturation exact."""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pbx import _dsp  # the C build itself, also under PBX_NO_EXTENSIONS=1
from pbx.media.mixer import DEAF, MUTED, Conference, c_mix_rows, py_mix_rows

c_kernel = functools.partial(c_mix_rows, ffi=_dsp.ffi, lib=_dsp.lib)
SAMPLE = st.integers(-32768, 32767)


@st.composite
def tick(draw: st.DrawFn, max_n: int = 10, max_samples: int = 1100
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs (n, samples) int16, flags (n,) uint8, whisper_to (n,) int32) incl. odd cases."""
    n = draw(st.integers(0, max_n))
    samples = draw(st.sampled_from([1, 7, 160, 481, max_samples]))
    loud = draw(st.booleans())  # loud: saturation everywhere; else small values
    elements = SAMPLE if loud else st.integers(-300, 300)
    inp = draw(hnp.arrays(np.int16, (n, samples), elements=elements))
    flags = draw(hnp.arrays(np.uint8, (n,), elements=st.sampled_from([0, MUTED, DEAF, MUTED | DEAF])))
    whisper = draw(hnp.arrays(np.int32, (n,), elements=st.integers(-1, n + 1)))
    if draw(st.booleans()):
        whisper[:] = -1
    return inp, flags, whisper


def brute_force(inp: np.ndarray, flags: np.ndarray, whisper: np.ndarray) -> dict[int, list[int]]:
    """Listener j hears every i != j that contributes and is common or whispers to j."""
    n = len(inp)
    out = {}
    for j in range(n):
        if flags[j] & DEAF:
            continue
        total = [0] * inp.shape[1]
        for i in range(n):
            if i == j or flags[i] & MUTED or (whisper[i] >= 0 and whisper[i] != j):
                continue
            total = [t + int(x) for t, x in zip(total, inp[i], strict=True)]
        out[j] = [max(-32768, min(32767, t)) for t in total]
    return out


@settings(max_examples=150, deadline=None)
@given(tick())
def test_c_equals_python_equals_model(case: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    inp, flags, whisper = case
    out_py = np.full(inp.shape, 12345, np.int16)
    out_c = out_py.copy()
    py_mix_rows(inp, out_py, flags, whisper)
    c_kernel(inp, out_c, flags, whisper)
    assert np.array_equal(out_c, out_py)  # deaf rows untouched in both
    model = brute_force(inp[:, :40], flags, whisper)
    assert {j: out_py[j, :40].tolist() for j in model} == model
    assert all((out_py[j] == 12345).all() for j in range(len(inp)) if flags[j] & DEAF)


@settings(max_examples=100, deadline=None)
@given(tick(max_samples=200), st.data())
def test_ptrs_entry_point_equals_rows(case: tuple[np.ndarray, np.ndarray, np.ndarray],
                                      data: st.DataObject) -> None:
    """pbx_mix_ptrs with NULL inputs == pbx_mix_rows with those rows MUTED."""
    ffi, lib = _dsp.ffi, _dsp.lib
    inp, flags, whisper = case
    n, samples = inp.shape
    absent = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    rows_flags = flags | np.array([MUTED if a else 0 for a in absent], np.uint8)
    expected = np.zeros(inp.shape, np.int16)
    c_kernel(inp, expected, rows_flags, whisper)
    got = np.zeros(inp.shape, np.int16)
    ins = ffi.new("const int16_t *[]", [ffi.NULL if a else ffi.from_buffer("int16_t[]", inp[i])
                                        for i, a in enumerate(absent)] or [ffi.NULL])
    outs = ffi.new("int16_t *[]", [ffi.from_buffer("int16_t[]", got[i]) for i in range(n)]
                   or [ffi.NULL])
    # Caller scratch, or (small conferences) the kernel's own.
    work = ffi.new("int32_t[]", max(1, 2 * n)) if data.draw(st.booleans()) else ffi.NULL
    assert lib.pbx_mix_ptrs(ins, outs, ffi.from_buffer("uint8_t[]", flags),
                            ffi.from_buffer("int32_t[]", whisper), n, samples, work) == 0
    assert np.array_equal(got, expected)


@st.composite
def conference(draw: st.DrawFn) -> tuple[Conference, list[int]]:
    kernel = draw(st.sampled_from([py_mix_rows, c_kernel]))
    n = draw(st.integers(2, 8))
    c = Conference(8000, 16, kernel=kernel)
    pids = list(range(n))
    for p in pids:
        c.join(p, muted=draw(st.booleans()) and draw(st.booleans()),
               deaf=draw(st.booleans()) and draw(st.booleans()))
    for p in pids:
        if draw(st.integers(0, 3)) == 0:
            c.whisper(p, to=draw(st.sampled_from([q for q in pids if q != p])))
    return c, pids


@settings(max_examples=100, deadline=None)
@given(conference(), st.data())
def test_own_audio_absent_whisper_only_to_target(setup: tuple[Conference, list[int]],
                                                  data: st.DataObject) -> None:
    """Give one participant a unique signal: by linearity (no saturation at these levels) it
    appears exactly in the outputs of those who should hear it and nowhere else."""
    c, pids = setup
    quiet = st.integers(-1000, 1000)
    frames = {p: data.draw(hnp.arrays(np.int16, 16, elements=quiet)) for p in pids}
    k = data.draw(st.sampled_from(pids))
    signal = data.draw(hnp.arrays(np.int16, 16, elements=st.integers(1, 1000)))  # never zero
    base = c.mix({**frames, k: np.zeros(16, np.int16)})
    with_k = c.mix({**frames, k: signal})
    me = c.members[k]
    for j, out in with_k.items():
        delta = out.astype(np.int32) - base[j]
        hears = j != k and not me.muted and me.whisper_to in (None, j)
        assert np.array_equal(delta, signal if hears else np.zeros(16)), (j, k, me)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 6), st.data())
def test_saturation_is_clip_of_exact_sum(n: int, data: st.DataObject) -> None:
    kernel = data.draw(st.sampled_from([py_mix_rows, c_kernel]))
    c = Conference(8000, 8, kernel=kernel)
    for p in range(n):
        c.join(p)
    frames = {p: data.draw(hnp.arrays(np.int16, 8, elements=SAMPLE)) for p in range(n)}
    out = c.mix(frames)
    for j in range(n):
        exact = sum(frames[i].astype(np.int64) for i in range(n) if i != j)
        assert np.array_equal(out[j], np.clip(exact, -32768, 32767))
