# Two commands: `make run` (reference PBX with the demo config) and `make test` (every test).
# Both bootstrap from a fresh clone: a .venv, the package in editable mode, and, when root,
# the Debian tools the interop tests drive (SIPp, baresip, espeak-ng, sox, libopus).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test setup ext debs lint typecheck unit interop bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py cext/build.py cext/*.c cext/*.h cext/*.cdef
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,speed]'
	touch $(STAMP)

# Rebuild the C kernels after editing cext/ (serialised, several shells may ask at once).
ext: setup
	flock $(VENV)/.build-lock $(PY) -m pip install -q --no-deps -e .

debs:
	@sh scripts/install-debs.sh

run: setup
	$(VENV)/bin/pbx serve --config examples/demo.toml

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/mypy

test: setup debs lint
	$(PY) -c "import pbx.media.dsp as d; print('pbx dsp implementation:', d.IMPLEMENTATION)"
	$(PY) -m pytest -q -p no:cacheprovider tests
	PBX_NO_EXTENSIONS=1 $(PY) -m pytest -q -p no:cacheprovider -m "not interop" tests

# Every benchmark: figures on stdout and JSON in benchmarks/out/ (several minutes; needs a quiet
# machine to mean anything). sip_load, media_relay, media_conference and media_mixer take --quick.
bench: setup debs
	$(PY) benchmarks/sip_load.py
	$(PY) benchmarks/media_relay.py
	$(PY) benchmarks/media_conference.py
	$(PY) benchmarks/media_jitter.py
	$(PY) benchmarks/media_mixer.py
	$(PY) benchmarks/media_pesq.py
	$(PY) benchmarks/b2bua_load.py

clean:
	rm -rf $(VENV) build src/*.egg-info src/pbx/_dsp*.so
