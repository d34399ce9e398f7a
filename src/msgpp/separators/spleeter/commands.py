"""`msgpp spleeter setup`: build Spleeter's environment; and `msgpp spleeter train`, the old
spelling of `msgpp separators train spleeter` (kept for one release)."""

from __future__ import annotations

from msgpp.separators.commands import add_train_alias
from msgpp.separators.spleeter.environment import SPLEETER_VERSION


def register(subparsers) -> None:
    parser = subparsers.add_parser("spleeter", help="Spleeter's environment (and the old spelling of its training)")
    commands = parser.add_subparsers(dest="spleeter_command", metavar="<command>", required=True)
    setup = commands.add_parser("setup", help=f"build Spleeter's virtual environment (spleeter {SPLEETER_VERSION})")
    setup.add_argument("--check", action="store_true", help="only say whether it is ready (exit 1 if not)")
    setup.set_defaults(func=run_setup)
    add_train_alias(commands, "train", "spleeter", "train a small Spleeter model with spleeter's own trainer")


def run_setup(args) -> int:
    from msgpp.separators.spleeter.environment import ensure_environment, environment_dir, environment_ready

    if args.check:
        ready = environment_ready()
        print(f"{environment_dir()}: {'ready' if ready else 'missing or stale'}")
        return 0 if ready else 1
    print(ensure_environment())
    return 0
