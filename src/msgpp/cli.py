"""The `msgpp` command. Each subcommand lives beside the code it drives and registers itself here.

User mistakes (MsgppError) print one line and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import import_module

from msgpp import __version__
from msgpp.errors import MsgppError

# Modules with `register(subparsers)`, which adds a parser whose defaults hold `func(args)`.
COMMAND_MODULES = [
    "msgpp.data.commands",
    "msgpp.separators.commands",
    "msgpp.demo",
    "msgpp.training.commands",
    "msgpp.separators.wavenet.commands",
    "msgpp.separators.spleeter.commands",
    "msgpp.enhance.commands",
    "msgpp.evaluation.commands",
]


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's error style: a usage mistake prints one line (no usage
    block) and exits with status 2; `--help` still shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="msgpp", description="Make separated music sound better (MSG post-processing).")
    parser.add_argument("--version", action="version", version=f"msgpp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for module_name in COMMAND_MODULES:
        import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except MsgppError as error:
        print(f"msgpp: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("msgpp: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
