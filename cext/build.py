"""cffi build script for the C media kernels (API mode, out-of-line).

Built by ``pip install`` through ``cffi_modules`` in setup.py; produces ``pbx._dsp``.
Every function declared here has a pure-Python twin in ``pbx.media.dsp``.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ["g711.c"]

ffibuilder = FFI()
ffibuilder.cdef(
    """
    void pbx_ulaw_encode(const int16_t *pcm, uint8_t *out, size_t n);
    void pbx_ulaw_decode(const uint8_t *in, int16_t *pcm, size_t n);
    void pbx_alaw_encode(const int16_t *pcm, uint8_t *out, size_t n);
    void pbx_alaw_decode(const uint8_t *in, int16_t *pcm, size_t n);
    """
)
ffibuilder.set_source(
    "pbx._dsp",
    '#include "g711.h"',
    sources=[str((HERE / s).relative_to(Path.cwd())) if (HERE / s).is_relative_to(Path.cwd()) else str(HERE / s) for s in SOURCES],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-std=c99", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
