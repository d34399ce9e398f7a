"""The `msgpp` entry point: help, version, and one-line errors without traceback."""
import subprocess
import sys

import msgpp
from msgpp.cli import COMMAND_MODULES, build_parser, main


def _run(*argv):
    return subprocess.run([sys.executable, "-m", "msgpp.cli", *argv], capture_output=True, text=True, timeout=120)


def test_version_and_help():
    result = _run("--version")
    assert result.returncode == 0 and msgpp.__version__ in result.stdout
    result = _run("--help")
    assert result.returncode == 0
    for command in ("data", "demo"):
        assert command in result.stdout


def test_every_command_module_registers():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # the registered subcommands
    assert len(choices) >= len(COMMAND_MODULES)


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_user_error_is_one_line_without_traceback(tmp_path):
    result = _run("data", "--root", str(tmp_path / "x"), "--preset", "tiny", "--soundfont", str(tmp_path / "missing.sf2"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("msgpp: error:"), result.stderr
    assert "Traceback" not in result.stderr
