"""The ``qomon-async`` command line: one function per subcommand, dispatched by ``main``.

Subcommands register themselves in ``_build_parser`` with ``set_defaults(run=...)``; each
``_cmd_*`` function takes the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from ._importer._commands import add_demo_command, add_import_command


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qomon-async", description="Async client tools for the Qomon API."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    add_import_command(commands)
    add_demo_command(commands)
    _add_fake_server(commands)
    return parser


# -- fake-server -----------------------------------------------------------------------------


def _add_fake_server(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser(
        "fake-server",
        help="serve the local Qomon emulator until interrupted",
        description=(
            "Serve the Qomon emulator (qomon_async.testing.FakeQomon). Prints "
            "QOMON_BASE_URL=... and QOMON_API_KEY=... on stdout once listening. "
            "What it saw is served as JSON under /__fake__/ (stats, requests, contacts, clock)."
        ),
    )
    sub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sub.add_argument("--port", type=int, default=8888, help="port; 0 picks a free one")
    sub.add_argument("--api-key", default="fake-qomon-key", help="the accepted Bearer key")
    sub.add_argument("--capacity", type=int, default=100, help="bucket size (default 100)")
    sub.add_argument("--rate", type=float, default=10.0, help="tokens per second (default 10)")
    sub.add_argument(
        "--time-scale", type=float, default=1.0, help="Qomon seconds per real second (default 1)"
    )
    sub.add_argument(
        "--search-lag",
        type=float,
        default=0.0,
        help="Qomon seconds before a write shows in /search and /kpi (default 0)",
    )
    sub.add_argument("--no-rate-limit", action="store_true", help="serve without a bucket")
    sub.add_argument("--seed", type=int, default=None, help="seed of random faults")
    sub.set_defaults(run=_cmd_fake_server)


def _cmd_fake_server(args: argparse.Namespace) -> int:
    # Imported here so that the other subcommands do not load the emulator.
    from qomon_async.testing import FakeQomon  # noqa: PLC0415

    fake = FakeQomon(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        capacity=args.capacity,
        rate=args.rate,
        rate_limit=not args.no_rate_limit,
        time_scale=args.time_scale,
        search_lag=args.search_lag,
        seed=args.seed,
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Not available on Windows; Ctrl-C then ends asyncio.run with KeyboardInterrupt.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        async with fake:
            print(f"QOMON_BASE_URL={fake.base_url}", flush=True)
            print(f"QOMON_API_KEY={fake.api_key}", flush=True)
            print("Qomon emulator running; Ctrl-C to stop.", file=sys.stderr, flush=True)
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``qomon-async`` command; return its exit code."""
    args = _build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
