"""Fixtures for the interop tests: free loopback ports, a real ``pbx serve`` per test, SIPp runs.

A missing tool (sipp, baresip, espeak-ng, sox) is a failure, never a skip: ``make test``
installs them. When a test fails, the stderr of every server it started is attached to its
report.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .pbxproc import PbxProcess, PortAllocator, wait_bound, write_config
from .sipp import SippProcess, sipp

TOOLS = ("sipp", "baresip", "espeak-ng", "sox")

_SERVERS = pytest.StashKey[list[PbxProcess]]()


@pytest.fixture(scope="session")
def ports() -> PortAllocator:
    return PortAllocator()


@pytest.fixture(scope="session", autouse=True)
def _tools_present() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    assert not missing, (f"interop tools missing: {', '.join(missing)} "
                         "(run `make debs` or scripts/install-debs.sh)")


PbxFactory = Callable[..., PbxProcess]


@pytest.fixture
def pbx(request: pytest.FixtureRequest, tmp_path: Path, ports: PortAllocator) -> Iterator[PbxFactory]:
    """``pbx(**config)`` writes a config (keywords of ``write_config``; ``port`` defaults to a
    free one), starts ``pbx serve`` on it and waits until it answers OPTIONS. Stopped at the
    end of the test."""
    started: list[PbxProcess] = []
    request.node.stash[_SERVERS] = started

    def start(**config: Any) -> PbxProcess:
        config.setdefault("port", ports.port())
        name = f"pbx{len(started) or ''}"
        path = write_config(tmp_path / f"{name}.toml", **config)
        server = PbxProcess(path, config["port"])
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for server in item.stash.get(_SERVERS, []):
            report.sections.append((f"pbx serve stderr ({server.config.name})", server.stderr()))
    return report


SippFactory = Callable[..., SippProcess]


@pytest.fixture
def run_sipp(tmp_path: Path, ports: PortAllocator) -> Iterator[SippFactory]:
    """``run_sipp(name, scenario=..., remote=..., calls=..., timeout=..., ...)`` starts a bounded
    SIPp run with its trace files in the test's tmp_path (keywords of ``sipp.sipp_args``; the
    local, media and control ports default to free ones). A run without ``remote`` (a UAS) is
    returned once its SIP socket is bound. Runs still going at the end of the test are killed."""
    running: list[SippProcess] = []

    def start(name: str, **kw: Any) -> SippProcess:
        kw.setdefault("local_port", ports.port())
        kw.setdefault("media_port", ports.block(4))
        kw.setdefault("control_port", ports.port())
        proc = sipp(name, tmp_path, **kw)
        running.append(proc)
        if not kw.get("remote"):
            tcp = str(kw.get("transport", "u1")).startswith("t")
            try:
                wait_bound(int(kw["local_port"]), "tcp" if tcp else "udp")
            except AssertionError as exc:
                proc.kill()
                raise AssertionError(f"{exc}\n{proc.wait().describe()}") from None
        return proc

    yield start
    for proc in running:
        proc.kill()
