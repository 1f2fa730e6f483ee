"""``python -m pictify_tasks demo``: the demo, from an installed wheel (no clone, no make)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pictify_tasks import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pictify_tasks",
        description="pictify-tasks: reliable cancellation of Pictify batch renders from Celery.",
    )
    parser.add_argument("--version", action="version", version=f"pictify-tasks {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="cancel batches and revoke workflows against a local emulator (no service needed)",
    )
    args = parser.parse_args(argv)
    if args.command != "demo":
        parser.print_help()
        return 2
    from pictify_tasks import demo

    demo.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
