"""The ``pbx`` command: ``check-config FILE``, ``serve --config FILE`` and
``cdr export --config FILE --format csv [--since ISO] [--until ISO] [--out FILE]``.

Exit codes: 0 success (``serve``: stopped by SIGINT/SIGTERM), 1 runtime failure (e.g. a port in
use), 2 bad configuration or usage, 130 interrupted during start-up. Expected failures print one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import datetime

from pbx import __version__
from pbx.config import Config, load_config
from pbx.errors import ConfigError, PbxError
from pbx.log import LEVELS
from pbx.log import setup as setup_logging

__all__ = ["main"]

log = logging.getLogger("pbx.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line in ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = argparse.ArgumentParser(prog="pbx", description="The pbx reference PBX.")
    parser.add_argument("--version", action="version", version=f"pbx {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", metavar="FILE")
    serve = commands.add_parser("serve", help="run the reference PBX")
    serve.add_argument("--config", required=True, metavar="FILE")
    serve.add_argument("--log-level", choices=sorted(LEVELS, key=LEVELS.__getitem__),
                       help="override [log] level")
    cdr = commands.add_parser("cdr", help="call records")
    cdr_commands = cdr.add_subparsers(dest="cdr_command", required=True, metavar="COMMAND")
    export = cdr_commands.add_parser(
        "export", help="write call records (by start time) as CSV",
        description="Times are ISO 8601 (e.g. 2024-05-01T08:00:00+08:00); without an offset "
                    "they are local time. --since is inclusive, --until exclusive.")
    export.add_argument("--config", required=True, metavar="FILE")
    export.add_argument("--format", choices=["csv"], default="csv")
    export.add_argument("--since", type=_iso_time, metavar="ISO")
    export.add_argument("--until", type=_iso_time, metavar="ISO")
    export.add_argument("--tenant")
    export.add_argument("--disposition")
    export.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    args = parser.parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file)
    if args.command == "cdr":
        return _cdr_export(args)
    return _serve(args.config, args.log_level)


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"pbx: {exc}", file=sys.stderr)
        return None


def _check_config(path: str) -> int:
    config = _load(path)
    if config is None:
        return 2
    listeners = ", ".join(str(x) for x in config.sip.listen)
    print(f"ok: {len(config.users)} users, {len(config.routes)} routes, listeners {listeners}")
    return 0


def _iso_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def _cdr_export(args: argparse.Namespace) -> int:
    from pbx.cdr import CdrStore  # lazy: the other commands do not need it

    config = _load(args.config)
    if config is None:
        return 2
    try:
        with contextlib.ExitStack() as stack:
            store = stack.enter_context(CdrStore(config.cdr_path, create=False))
            out = sys.stdout if args.out is None else stack.enter_context(
                open(args.out, "w", newline="", encoding="utf-8"))
            store.export_csv(out, since=args.since, until=args.until, tenant=args.tenant,
                             disposition=args.disposition)
    except (OSError, PbxError) as exc:
        print(f"pbx: {exc}", file=sys.stderr)
        return 1
    return 0


def _serve(path: str, log_level: str | None) -> int:
    config = _load(path)
    if config is None:
        return 2
    setup_logging(log_level or config.log_level, config.log_format)
    profile = os.environ.get("PBX_PROFILE")  # developer aid: cProfile stats written at exit
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            if profiler is not None:
                profiler.enable()
            try:
                runner.run(_serve_until_signal(config))
            finally:
                if profiler is not None and profile:
                    profiler.disable()
                    profiler.dump_stats(profile)
    except KeyboardInterrupt:  # SIGINT before our handlers were in place
        return 130
    except ConfigError as exc:
        print(f"pbx: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:          # a [[numbers]] or [[rules]] app that is not registered
        print(f"pbx: {path}: {exc}", file=sys.stderr)
        return 2
    except (OSError, PbxError) as exc:
        print(f"pbx: {exc}", file=sys.stderr)
        return 1
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (the ``speed`` extra), else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _serve_until_signal(config: Config) -> None:
    """Run the reference PBX until SIGINT/SIGTERM cancels it, letting it clean up."""
    from pbx.pbx import Pbx  # lazy: check-config must work without the server's imports

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(Pbx(config).serve_forever())
    stopping = False

    def stop(signum: int) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            log.info("%s received, stopping", signal.Signals(signum).name)
            task.cancel()

    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no support
            pass
    try:
        await task
    except asyncio.CancelledError:
        if not stopping:
            raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
