"""Properties of the resampler: C == Python, streaming == one shot, output counts.

* For any supported ratio and any way of cutting the input into chunks, the C kernel and the
  Python twin give the same samples, equal to one call on the whole input.
* The stream yields ceil(n * up / down) samples for n input samples (from silence).
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx import _dsp  # type: ignore[attr-defined]
from pbx.media import resample as rs

NATIVE = (_dsp.ffi, _dsp.lib)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000]


@FAST
@given(src=st.sampled_from(RATES), dst=st.sampled_from(RATES),
       data=st.lists(st.integers(-32768, 32767), min_size=0, max_size=1500),
       cuts=st.lists(st.integers(0, 1500), max_size=6))
def test_twins_agree_and_streaming_equals_one_shot(src: int, dst: int, data: list[int],
                                                   cuts: list[int]) -> None:
    x = np.array(data, np.int16)
    bounds = [0, *sorted(min(c, len(x)) for c in cuts), len(x)]
    py, c = rs.PyResampler(src, dst), rs.CResampler(src, dst, native=NATIVE)
    parts_py = [py.process(x[a:b]) for a, b in itertools.pairwise(bounds)]
    parts_c = [c.process(x[a:b]) for a, b in itertools.pairwise(bounds)]
    whole = rs.PyResampler(src, dst).process(x)
    assert np.array_equal(np.concatenate(parts_py), whole)
    assert np.array_equal(np.concatenate(parts_c), whole)
    up, down = py.up, py.down
    assert len(whole) == -(-len(x) * up // down)


@FAST
@given(src=st.sampled_from(RATES), dst=st.sampled_from(RATES),
       level=st.integers(-32768, 32767))
def test_constant_input_settles_to_itself(src: int, dst: int, level: int) -> None:
    r = rs.CResampler(src, dst, native=NATIVE)
    y = r.process(np.full(src // 10, level, np.int16))
    assert np.all(y[int(2 * r.delay) + 2:] == level)
