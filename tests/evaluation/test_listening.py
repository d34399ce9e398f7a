"""The listening-test kit: the binomial analysis against known p-values, screening, the kit's
randomisation and seeding, the page in headless Chromium, and the CLI."""

from __future__ import annotations

import argparse
import html
import json
import re
import subprocess
from math import comb
from pathlib import Path

import numpy as np
import pytest

from msgpp.errors import MsgppError
from msgpp.evaluation import listening
from tests.helpers.evaluation import chromium, lowpass, make_tiny_setup


def exact_two_sided(k: int, n: int) -> float:
    """Two-tailed binomial p at p = 0.5 from first principles (the distribution is symmetric)."""
    tail = sum(comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail) if k != n - k else 1.0


def _key(tests: dict[str, int]) -> dict:
    """An answer key with `count` items per test, msg always on side A, and one screening item."""
    key = {"format": listening.KEY_FORMAT, "kit_id": "k1", "tests": {}, "items": {}, "screening": {}}
    for test, count in tests.items():
        key["tests"][test] = {"separator": f"sep{test}", "source": "bass", "items": count}
        for i in range(count):
            key["items"][f"{test}-i{i:03d}"] = {"test": test, "A": "msg", "B": "raw"}
        key["screening"][f"{test}-s000"] = {"test": test, "A": "reference", "B": "degraded"}
    return key


def _session(listener: str, test: str, choices: str, screening: str = "A") -> dict:
    answers = [{"item": f"{test}-i{i:03d}", "choice": c} for i, c in enumerate(choices)]
    answers.append({"item": f"{test}-s000", "choice": screening})
    return {"file": f"{listener}.json", "kit_id": "k1", "listener": listener, "session": test, "answers": answers}


@pytest.mark.parametrize(
    "k,n,expected", [(9, 10, 0.021484375), (7, 10, 0.34375), (15, 20, None), (3, 25, None), (10, 20, 1.0)]
)
def test_binomial_p_values_are_exact(k, n, expected):
    key = _key({"t00": n})
    table = listening.preference_table(key, [_session("ann", "t00", "A" * k + "B" * (n - k))])
    row = table[0]
    assert row["answers"] == n and row["msg_preferred"] == k
    assert row["msg_percent"] == pytest.approx(100 * k / n)
    assert row["p_value"] == pytest.approx(expected if expected is not None else exact_two_sided(k, n), rel=1e-9)
    assert row["significant"] == (row["p_value"] < 0.05)


def test_answers_pool_over_listeners_and_screening_failures_are_excluded():
    key = _key({"t00": 10, "t01": 10})
    sessions = [
        _session("ann", "t00", "AAAAAAAAAA"),
        _session("bob", "t00", "AAAAAAAABB"),
        _session("eve", "t00", "BBBBBBBBBB", screening="B"),  # preferred the degraded copy: excluded
        _session("cat", "t01", "BBBBBBBBBA"),
    ]
    table = {row["test"]: row for row in listening.preference_table(key, sessions)}
    assert table["t00"]["answers"] == 20 and table["t00"]["msg_preferred"] == 18
    assert table["t00"]["listeners"] == 2 and table["t00"]["excluded_listeners"] == 1
    assert table["t00"]["p_value"] == pytest.approx(exact_two_sided(18, 20))
    assert table["t01"]["msg_preferred"] == 1 and table["t01"]["msg_percent"] == pytest.approx(10.0)


def test_bad_answers_are_refused():
    key = _key({"t00": 2})
    with pytest.raises(MsgppError, match="unknown item"):
        listening.preference_table(
            key,
            [
                {
                    "file": "x.json",
                    "kit_id": "k1",
                    "listener": "a",
                    "session": "",
                    "answers": [{"item": "zz", "choice": "A"}],
                }
            ],
        )
    with pytest.raises(MsgppError, match="A or B"):
        listening.preference_table(
            key,
            [
                {
                    "file": "x.json",
                    "kit_id": "k1",
                    "listener": "a",
                    "session": "",
                    "answers": [{"item": "t00-i000", "choice": "left"}],
                }
            ],
        )
    with pytest.raises(MsgppError, match="another kit"):
        listening.preference_table(
            key, [{"file": "x.json", "kit_id": "other", "listener": "a", "session": "", "answers": []}]
        )


def test_loudness_match_equalises_rms_without_clipping():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 1000)).astype(np.float32) * 0.01
    b = rng.standard_normal((2, 1000)).astype(np.float32) * 3.0
    b[0, 10] = 40.0  # a big peak: the shared gain must bring it under full scale
    x, y = listening.loudness_match(a, b)
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(
        np.sqrt(np.mean(y.astype(np.float64) ** 2)), rel=1e-4
    )
    assert max(np.abs(x).max(), np.abs(y).max()) <= 0.99 + 1e-6


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A kit made from a fake `msgpp evaluate` output (run.json + enhanced audio): no metrics needed."""
    from msgpp.audio import load_audio, save_audio
    from msgpp.evaluation.evaluate import EnhancerSpec, enhanced_path
    from msgpp.separators.cache import find_estimates

    base = tmp_path_factory.mktemp("listening")
    root, cache = make_tiny_setup(base)
    evaluation = base / "evaluation"
    run_info = {"subset": "test", "separators": {}, "enhancers": {"bass": {"id": "enh-bass", "name": "bass"}}}
    spec = EnhancerSpec("bass", "enh-bass", "bass", load=lambda: None)
    for separator in ("demucs_v2", "openunmix"):
        run_info["separators"][separator] = {"family": "x", "weights_id": "abc123def456"}
        for track, paths in find_estimates(cache, separator, "test").items():
            audio, rate = load_audio(paths["bass"])
            save_audio(
                enhanced_path(evaluation, spec, separator, "abc123def456", "test", track),
                lowpass(audio, rate, 5000),
                rate,
                subtype="FLOAT",
            )
    (evaluation / "run.json").write_text(json.dumps(run_info))
    out = base / "kit"
    page = listening.make_kit(root, cache, evaluation, out, seconds=2.0, pairs=25, listeners=3, seed=7)
    return root, cache, evaluation, out, page


def test_kit_has_randomised_seeded_sessions_and_a_screening_pair(kit, tmp_path):
    root, cache, evaluation, out, page = kit
    key = json.loads((out / "answer_key.json").read_text())
    assert {(t["separator"], t["source"]) for t in key["tests"].values()} == {
        ("demucs_v2", "bass"),
        ("openunmix", "bass"),
    }
    assert len(key["items"]) == 4 and len(key["screening"]) == 2
    for item in list(key["items"]) + list(key["screening"]):
        for side in "AB":
            assert (out / "audio" / f"{item}_{side}.wav").stat().st_size > 1000
    sides = {v["A"] for v in key["items"].values()}
    assert sides <= {"msg", "raw"} and all({v["A"], v["B"]} == {"msg", "raw"} for v in key["items"].values())
    kit_js = (out / "kit.js").read_text()
    sessions = json.loads(kit_js.removeprefix("window.MSGPP_KIT = ").rstrip().rstrip(";"))["sessions"]
    assert len(sessions) == 2 * 3
    for session in sessions:
        assert sum(i.endswith("-s000") for i in session["items"]) == 1  # exactly one screening pair
        assert len(session["items"]) == 2 + 1  # all (2) songs of the test, then the screening pair
    assert "msg" not in kit_js and "raw" not in kit_js  # the page does not reveal the conditions
    # same seed → same kit; another seed → another randomisation
    again = listening.make_kit(root, cache, evaluation, tmp_path / "same", seconds=2.0, pairs=25, listeners=3, seed=7)
    assert (again.parent / "answer_key.json").read_text() == (out / "answer_key.json").read_text()
    other = listening.make_kit(root, cache, evaluation, tmp_path / "other", seconds=2.0, pairs=25, listeners=3, seed=8)
    assert (other.parent / "kit.js").read_text() != kit_js


def _dump_dom(page: Path, profile: Path, query: str = "") -> str:
    browser = chromium()
    assert browser, "chromium is not installed (make apt installs it)"
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        page.resolve().as_uri() + query,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120).stdout


# Drives the real page: a listener named "robot" takes session t01-l02, plays both sides of every
# pair and alternates A/B; the exported JSON is copied into a body attribute for the test to read.
_ROBOT = """<script>
$('listener').value = 'robot'; $('session').value = 't01-l02'; $('start').click();
for (let i = 0; i < session.items.length; i++) {
  const before = $('chooseA').disabled;
  $('audioA').dispatchEvent(new Event('play')); $('audioB').dispatchEvent(new Event('play'));
  document.body.dataset.lockedBeforePlay = before;
  (i % 2 ? $('chooseB') : $('chooseA')).click();
}
document.body.dataset.answers = $('answersText').value;
</script></body>"""


def test_kit_page_runs_in_headless_chromium_and_its_export_is_analysed(kit, tmp_path):
    *_, out, page = kit
    dom = _dump_dom(page, tmp_path / "profile", "?session=t00-l01")
    assert re.search(r'<body[^>]*data-sessions="6"', dom), dom[:1500]  # kit.js loaded and the script ran
    assert 'option value="t00-l01"' in dom and "headphones" in dom

    robot = out / "robot.html"
    robot.write_text(page.read_text().replace("</body>", _ROBOT))
    dom = _dump_dom(robot, tmp_path / "profile2")
    assert 'data-locked-before-play="true"' in dom  # no choice before both sides were played
    exported = json.loads(html.unescape(re.search(r'data-answers="([^"]*)"', dom).group(1)))
    assert exported["format"] == listening.ANSWER_FORMAT and exported["session"] == "t01-l02"
    assert exported["listener"] == "robot" and len(exported["answers"]) == 3  # 2 pairs + screening
    (tmp_path / "robot.json").write_text(json.dumps(exported))
    key = json.loads((out / "answer_key.json").read_text())
    table = {
        row["test"]: row for row in listening.preference_table(key, listening.read_answers([tmp_path / "robot.json"]))
    }
    screening = next(a for a in exported["answers"] if a["item"] in key["screening"])
    passed = key["screening"][screening["item"]][screening["choice"]] == "reference"
    assert table["t01"]["answers"] == (2 if passed else 0)
    assert table["t01"]["excluded_listeners"] == (0 if passed else 1)
    assert all(row["answers"] == 0 for test, row in table.items() if test != "t01")


def _cli(argv: list[str]) -> int:
    from msgpp.evaluation import commands

    parser = argparse.ArgumentParser(prog="msgpp")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_analyse_command_reads_exported_json_and_writes_fig2(kit, tmp_path, capsys):
    *_, out, _ = kit
    key = json.loads((out / "answer_key.json").read_text())
    answers = []
    for item, info in key["items"].items():  # a listener who always picks the enhanced side
        answers.append({"item": item, "choice": "A" if info["A"] == "msg" else "B"})
    for item, info in key["screening"].items():
        answers.append({"item": item, "choice": "A" if info["A"] == "reference" else "B"})
    folder = tmp_path / "answers"
    folder.mkdir()
    (folder / "ann.json").write_text(
        json.dumps(
            {
                "format": listening.ANSWER_FORMAT,
                "kit_id": key["kit_id"],
                "session": "x",
                "listener": "ann",
                "answers": answers,
            }
        )
    )
    (folder / "bob.csv").write_text(
        "listener,session,item,choice\n" + "".join(f"bob,y,{a['item']},{a['choice']}\n" for a in answers)
    )
    assert _cli(["listening-test", "analyse", str(out), str(folder), "--out", str(tmp_path / "results")]) == 0
    printed = capsys.readouterr().out
    assert "| demucs_v2 | bass | 2 | 4 | 100 %" in printed
    assert (tmp_path / "results" / "preferences.png").stat().st_size > 5000
    rows = (tmp_path / "results" / "preferences.csv").read_text().splitlines()
    assert rows[1].split(",")[8] == repr(exact_two_sided(4, 4))
    with pytest.raises(MsgppError, match="no answer_key.json"):
        _cli(["listening-test", "analyse", str(tmp_path), str(folder)])
