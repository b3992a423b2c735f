"""cffi build script for the C media kernels (API mode, out-of-line).

Built by ``pip install`` through ``cffi_modules`` in setup.py; produces ``pbx._dsp``.
Each kernel is three files: ``name.c``, ``name.h`` and ``name.cdef`` (the declarations cffi
exposes). Every exposed function has a pure-Python twin; the twins are checked against it.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


SOURCES = sorted(HERE.glob("*.c"))
HEADERS = sorted(HERE.glob("*.h"))
CDEFS = sorted(HERE.glob("*.cdef"))

ffibuilder = FFI()
ffibuilder.cdef("\n".join(p.read_text() for p in CDEFS))
ffibuilder.set_source(
    "pbx._dsp",
    "\n".join(f'#include "{h.name}"' for h in HEADERS),
    sources=[_rel(s) for s in SOURCES],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-std=gnu99", "-Wall"],
    libraries=["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
