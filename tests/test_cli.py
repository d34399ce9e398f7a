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
    result = _run(
        "data", "--root", str(tmp_path / "x"), "--preset", "tiny", "--soundfont", str(tmp_path / "missing.sf2")
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("msgpp: error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs_the_stages_in_order_and_stops_at_a_failing_one(monkeypatch, capsys):
    """The demo calls the stage functions (not `msgpp.cli.main`), and a stage's user error ends it
    with status 2 and one line naming the step."""
    from msgpp import demo
    from msgpp.errors import MsgppError

    calls = []
    monkeypatch.setattr(demo, "make_benchmark", lambda root, preset, seed: calls.append(("data", root, preset, seed)))
    monkeypatch.setattr(demo, "separate_test_songs", lambda root, names, cache: calls.append(("separate", names)))
    monkeypatch.setattr(
        demo, "enhance_and_evaluate", lambda root, cache, out, names: calls.append(("evaluate", str(out)))
    )
    assert main(["demo", "--root", "r", "--cache", "c", "--out", "o", "--preset", "tiny"]) == 0
    assert calls == [
        ("data", "r", "tiny", 0),
        ("separate", "demucs_v2,hdemucs_v3,openunmix,spleeter,wavenet"),
        ("evaluate", "o/report"),
    ]
    out = capsys.readouterr().out
    assert "== demo step 2/3: separate the test songs (msgpp separate --root r" in out and "Report: o/report" in out

    def broken(*args):
        raise MsgppError("no soundfont")

    monkeypatch.setattr(demo, "make_benchmark", broken)
    calls.clear()
    assert main(["demo", "--separators", "openunmix"]) == 2
    captured = capsys.readouterr()
    assert calls == [] and "msgpp: error: no soundfont" in captured.err
    assert "msgpp demo: step 1 (make the embedded benchmark) failed with status 2" in captured.out
