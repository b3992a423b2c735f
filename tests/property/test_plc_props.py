"""Properties of the concealment: C == Python under any sequence, bounded output.

* Any interleaving of good frames (of any length) and lost frames gives identical samples and
  state from the C kernel and the Python twin, at every supported rate.
* Output is never louder than the loudest input so far (cross-fades and fades only), and has
  exactly as many samples as asked.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx import _dsp  # type: ignore[attr-defined]
from pbx.media import plc

NATIVE = (_dsp.ffi, _dsp.lib)
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A step: a good frame of `length` samples (a tone plus noise), or a lost 10/20 ms (length < 0).
steps = st.lists(st.tuples(st.integers(-2, 400), st.integers(0, 2**31 - 1)), min_size=1,
                 max_size=25)


def good_frame(length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    tone = np.sin(2 * np.pi * t / rng.uniform(30, 250)) * rng.uniform(0, 20000)
    return (tone + rng.normal(size=length) * rng.uniform(0, 5000)).clip(-32768, 32767).astype(
        np.int16)


@FAST
@given(rate=st.sampled_from(plc.SUPPORTED_RATES), script=steps)
def test_twins_agree_and_output_is_bounded(rate: int, script: list[tuple[int, int]]) -> None:
    block = rate // 100
    py, c = plc.PyPlc(rate, 2 * block), plc.CPlc(rate, 2 * block, native=NATIVE)
    peak = 0
    for length, seed in script:
        if length < 0:
            n = -length * block
            a, b = py.missing(n), c.missing(n)
        else:
            x = good_frame(length * rate // 8000, seed)
            peak = max(peak, int(np.abs(x.astype(np.int64)).max(initial=0)))
            n = len(x)
            a, b = py.good(x), c.good(x)
        assert len(a) == n and np.array_equal(a, b)
        assert int(np.abs(a.astype(np.int64)).max(initial=0)) <= peak + 1
        assert (py.pitch, py.erased) == (c.pitch, c.erased)
