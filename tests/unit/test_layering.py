"""The layering rules of DESIGN.md, checked on the source.

Cores (everything under ``pbx/sip``, ``pbx/rtp`` and ``pbx/media`` except the asyncio shells named
in ``SHELLS``) are sans-I/O: they never import asyncio, socket, time, random or threading, nor a
shell (which would bring those in). No module of those packages, shell or core, imports the apps
or the call layer above it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGES = ("pbx/sip", "pbx/rtp", "pbx/media")

# The asyncio shells: these file names, and any module whose file stem or enclosing directory has
# one of SHELL_WORDS among its "_"-separated words (``aio/``, ``udp_shell.py``, ``aio_ws.py``).
# Adding a module here is a design decision: say why in DESIGN.md.
SHELLS = frozenset({"transport.py", "endpoint.py", "engine.py", "server.py"})
SHELL_WORDS = frozenset({"shell", "aio"})

FORBIDDEN_IN_CORES = ("asyncio", "socket", "time", "random", "threading")
FORBIDDEN_EVERYWHERE = ("pbx.apps", "pbx.call")


def modules() -> list[Path]:
    found = sorted(p for pkg in PACKAGES for p in (SRC / pkg).rglob("*.py"))
    assert found, f"no modules found under {SRC}"
    return found


def is_shell(path: Path, src: Path = SRC) -> bool:
    rel = path.relative_to(src)
    parts = [*rel.parts[:-1], rel.stem]
    return path.name in SHELLS or any(SHELL_WORDS & set(part.split("_")) for part in parts)


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path, src: Path = SRC) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in the file, relative ones resolved.

    ``from pkg import name`` yields both ``pkg`` and ``pkg.name`` (the name may be a module).
    ``importlib.import_module("x")`` and ``__import__("x")`` with a literal name count too.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, src)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = (func.attr if isinstance(func, ast.Attribute)
                    else func.id if isinstance(func, ast.Name) else "")
            arg = node.args[0]
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant) \
                    and isinstance(arg.value, str):
                yield node.lineno, arg.value


def hits(name: str, forbidden: tuple[str, ...]) -> str | None:
    for bad in forbidden:
        if name == bad or name.startswith(bad + "."):
            return bad
    return None


def shell_modules(src: Path) -> tuple[str, ...]:
    return tuple(module_name(p, src) for pkg in PACKAGES for p in (src / pkg).rglob("*.py")
                 if is_shell(p, src))


def violations(path: Path, src: Path = SRC) -> list[tuple[str, str]]:
    """(where, forbidden module) for each forbidden import in ``path``."""
    out = []
    core = not is_shell(path, src)
    in_cores = FORBIDDEN_IN_CORES + shell_modules(src) if core else ()
    for line, name in imported_names(path, src):
        bad = hits(name, FORBIDDEN_EVERYWHERE) or hits(name, in_cores)
        if bad is not None:
            out.append((f"{path.relative_to(src)}:{line} imports {name}", bad))
    return sorted(set(out))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_respects_the_layering(path: Path) -> None:
    assert [where for where, _ in violations(path)] == []


def test_the_shell_allow_list_is_explicit(tmp_path: Path) -> None:
    for rel, shell in [("pbx/sip/transport.py", True), ("pbx/media/engine.py", True),
                       ("pbx/sip/aio/udp.py", True), ("pbx/rtp/udp_shell.py", True),
                       ("pbx/media/aio_socket.py", True), ("pbx/sip/message.py", False),
                       ("pbx/media/radio.py", False), ("pbx/sip/shellfish.py", False),
                       ("pbx/rtp/stream.py", False)]:
        assert is_shell(tmp_path / rel, tmp_path) is shell, rel
    found = {p.relative_to(SRC).as_posix() for p in modules() if is_shell(p)}
    assert "pbx/sip/message.py" not in found
    assert {"pbx/sip/message.py", "pbx/sip/uri.py", "pbx/sip/via.py"} <= {
        p.relative_to(SRC).as_posix() for p in modules()}


# The checker itself must catch what it claims to catch.


@pytest.mark.parametrize(("source", "expected"), [
    ("import asyncio\n", {"asyncio"}),
    ("import asyncio.events as ev\n", {"asyncio"}),
    ("from time import monotonic\n", {"time"}),
    ("import os, random\n", {"random"}),
    ("from socket import socket\n", {"socket"}),
    ("import threading\n", {"threading"}),
    ("from pbx import apps\n", {"pbx.apps"}),
    ("from pbx.apps.ivr import menu\n", {"pbx.apps"}),
    ("from ..apps import ivr\n", {"pbx.apps"}),
    ("from .. import call\n", {"pbx.call"}),
    ("import pbx.call\n", {"pbx.call"}),
    ("import importlib\nimportlib.import_module('time')\n", {"time"}),
    ("__import__('socket')\n", {"socket"}),
    ("def f():\n    import random\n", {"random"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio\n", {"asyncio"}),
    ("import timeit\nimport datetime\nimport randomness\nfrom pbx.sip import message\n"
     "from . import uri\nfrom pbx import callbacks\n", set()),
])
def test_checker_detects_forbidden_imports(tmp_path: Path, source: str,
                                           expected: set[str]) -> None:
    pkg = tmp_path / "pbx" / "sip"
    pkg.mkdir(parents=True)
    path = pkg / "probe.py"
    path.write_text(source, encoding="utf-8")
    assert {bad for _, bad in violations(path, tmp_path)} == expected


def test_shells_may_use_asyncio_but_not_the_apps(tmp_path: Path) -> None:
    pkg = tmp_path / "pbx" / "media"
    (pkg / "aio_helpers").mkdir(parents=True)
    engine = pkg / "engine.py"
    engine.write_text("import asyncio\nimport socket\nimport time\n", encoding="utf-8")
    helper = pkg / "aio_helpers" / "loop.py"
    helper.write_text("import asyncio\nfrom pbx.apps import ivr\n", encoding="utf-8")
    core = pkg / "mixer.py"
    core.write_text("import asyncio\nfrom pbx.media.engine import Engine\n", encoding="utf-8")
    assert violations(engine, tmp_path) == []
    assert {bad for _, bad in violations(helper, tmp_path)} == {"pbx.apps"}
    assert {bad for _, bad in violations(core, tmp_path)} == {"asyncio", "pbx.media.engine"}
