"""Entry point of `nst`: each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nst_shared.allocator import restart_with_engine_malloc

# Each module has `register(subparsers)`, which adds its parsers with `set_defaults(handler=...)`;
# a handler takes the parsed namespace and returns the exit code. Modules import lazily what they use,
# so `nst submit` never pays for torch.
COMMAND_MODULES: tuple[str, ...] = ("nst_cli.run", "nst_cli.info", "nst_cli.up", "nst_cli.remote")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nst", description="Neural style transfer (Gatys et al., 2016).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None and args.command == "run":  # the program itself, not a test calling main()
        restart_with_engine_malloc()
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
