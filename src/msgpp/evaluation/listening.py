"""A two-alternative forced-choice listening test, as in the paper (§4.4, Fig. 2).

`make_kit` builds a static folder that any browser opens from disk (no server):

    index.html        instructions, session choice, the trials, answer export (JSON download)
    kit.js            the sessions: for each test (separator × source) `listeners` sessions of
                      `pairs` randomly chosen pairs plus one screening pair, in random order
    audio/*.wav       7-s excerpts, file names that do not reveal the condition
    answer_key.json   which side holds which condition (not loaded by the page)

One test per separator × source; one excerpt per test song (seeded choice among its loud
stretches); which side is enhanced is random per pair (seeded). The screening pair sets the
ground truth against an obviously degraded copy: a listener who prefers the degraded one is
excluded from the analysis.

`analyse_answers` reads the exported answers and runs a two-tailed binomial test (p = 0.5) per
separator × source: the share of choices for the MSG-enhanced excerpt and its p-value.

Answer format (what the page exports; a CSV with the columns listener,session,item,choice works too):
    {"format": "msgpp-listening-answers/1", "kit_id": "...", "session": "...", "listener": "...",
     "answers": [{"item": "t00-i003", "choice": "A", "ms": 8123}, ...]}
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from msgpp.errors import MsgppError, check_number
from msgpp.evaluation import templates
from msgpp.files import atomic_write_text

KEY_FORMAT = "msgpp-listening-key/1"
ANSWER_FORMAT = "msgpp-listening-answers/1"
TARGET_RMS_DBFS = -23.0
INSTRUCTIONS = (
    "You will hear pairs of short recordings of one instrument (bass, drums, vocals ...) taken from "
    "songs. Both recordings of a pair are the same music processed in two different ways. Listen to "
    "both, as often as you like, then choose the one that sounds better — the more natural, "
    "cleaner-sounding recording with fewer artifacts. There is no right answer; go with your ear. "
    "Please use headphones in a quiet room and keep the volume constant."
)


# --- making the kit ---------------------------------------------------------------------------


def make_kit(
    root: str | os.PathLike,
    cache_root: str | os.PathLike,
    evaluation_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    separators: list[str] | None = None,
    sources: list[str] | None = None,
    seconds: float = 7.0,
    pairs: int = 25,
    listeners: int = 30,
    seed: int = 0,
) -> Path:
    """Build the test folder from an `msgpp evaluate` output (its run.json and enhanced audio)."""
    from msgpp.audio import load_audio, save_audio
    from msgpp.evaluation.evaluate import EnhancerSpec, enhanced_path, ground_truth_tracks, match_format
    from msgpp.separators.cache import find_estimates

    seconds = check_number("--seconds", seconds, above=0)
    pairs = check_number("--pairs", pairs, minimum=1, integer=True)
    listeners = check_number("--listeners", listeners, minimum=1, integer=True)
    evaluation_dir, out = Path(evaluation_dir), Path(out)
    run_file = evaluation_dir / "run.json"
    if not run_file.is_file():
        raise MsgppError(f"--enhanced {evaluation_dir}: no run.json (run `msgpp evaluate` first)")
    run_info = _read_json(run_file, "an `msgpp evaluate` run.json", {"separators": dict, "enhancers": dict})
    enhancers = run_info.get("enhancers", {})
    for section in ("separators", "enhancers"):
        for name, entry in run_info[section].items():
            needed = ("weights_id",) if section == "separators" else ("id", "name")
            if not isinstance(entry, dict) or any(not isinstance(entry.get(k), str) for k in needed):
                raise MsgppError(
                    f"{run_file}: damaged ({section}.{name} lacks {', '.join(needed)}); rerun `msgpp evaluate`"
                )
    chosen_separators = separators or sorted(run_info["separators"])
    chosen_sources = sources or sorted(enhancers)
    for separator in chosen_separators:
        if separator not in run_info["separators"]:
            raise MsgppError(f"--separators: {separator!r} was not evaluated in {evaluation_dir}")
    for source in chosen_sources:
        if source not in enhancers:
            raise MsgppError(f"--sources: {source!r} has no enhancer in {evaluation_dir}")
    subset = run_info.get("subset", "test")
    truth_tracks = ground_truth_tracks(root, subset)
    rng = np.random.default_rng(seed)

    key = {"format": KEY_FORMAT, "seed": seed, "seconds": seconds, "tests": {}, "items": {}, "screening": {}}
    sessions = []
    audio_dir = out / "audio"
    for test_number, (separator, source) in enumerate((a, b) for a in chosen_separators for b in chosen_sources):
        test_id = f"t{test_number:02d}"
        weights = run_info["separators"][separator]["weights_id"]
        spec = EnhancerSpec(
            source=source, id=enhancers[source]["id"], name=enhancers[source]["name"], load=lambda: None
        )
        estimates = find_estimates(cache_root, separator, subset, weights)
        item_ids = []
        tracks = [
            t
            for t in sorted(estimates)
            if t in truth_tracks
            and source in estimates[t]
            and enhanced_path(evaluation_dir, spec, separator, weights, subset, t).is_file()
        ]
        if not tracks:
            continue
        screening_done = False
        for track in tracks:
            truth, rate = truth_tracks[track].load_source(source), truth_tracks[track].sample_rate
            raw, raw_rate = load_audio(estimates[track][source])
            msg, msg_rate = load_audio(enhanced_path(evaluation_dir, spec, separator, weights, subset, track))
            if (msg_rate, msg.shape[0]) != (raw_rate, raw.shape[0]):  # 16-kHz-mono enhancement: compare alike
                raw, raw_rate = match_format(raw, raw_rate, msg_rate, msg.shape[0]), msg_rate
                truth, rate = match_format(truth, rate, msg_rate, msg.shape[0]), msg_rate
            start = choose_excerpt(truth, rate, seconds, rng)
            clips = {
                name: _excerpt(audio, r, start, seconds)
                for name, (audio, r) in (("raw", (raw, raw_rate)), ("msg", (msg, msg_rate)))
            }
            if min(c.shape[-1] for c in clips.values()) < int(0.5 * rate):
                continue  # a song shorter than half a second has nothing to judge
            item_id = f"{test_id}-i{len(item_ids):03d}"
            sides = ["msg", "raw"] if rng.random() < 0.5 else ["raw", "msg"]
            a, b = loudness_match(clips[sides[0]], clips[sides[1]])
            save_audio(audio_dir / f"{item_id}_A.wav", a, msg_rate if sides[0] == "msg" else raw_rate, subtype="PCM_16")
            save_audio(audio_dir / f"{item_id}_B.wav", b, msg_rate if sides[1] == "msg" else raw_rate, subtype="PCM_16")
            key["items"][item_id] = {
                "test": test_id,
                "track": track,
                "start_s": round(start, 3),
                "A": sides[0],
                "B": sides[1],
            }
            item_ids.append(item_id)
            if not screening_done:  # one screening pair per test, from its first usable song
                screening_id = f"{test_id}-s000"
                clean = _excerpt(truth, rate, start, seconds)
                degraded = degrade(clean, rate, rng)
                sides = ["reference", "degraded"] if rng.random() < 0.5 else ["degraded", "reference"]
                pair = {"reference": clean, "degraded": degraded}
                a, b = loudness_match(pair[sides[0]], pair[sides[1]])
                save_audio(audio_dir / f"{screening_id}_A.wav", a, rate, subtype="PCM_16")
                save_audio(audio_dir / f"{screening_id}_B.wav", b, rate, subtype="PCM_16")
                key["screening"][screening_id] = {"test": test_id, "track": track, "A": sides[0], "B": sides[1]}
                screening_done = True
        if not item_ids:
            continue
        key["tests"][test_id] = {"separator": separator, "source": source, "items": len(item_ids)}
        for listener in range(listeners):
            chosen = list(rng.permutation(item_ids)[: min(pairs, len(item_ids))])
            chosen.insert(int(rng.integers(0, len(chosen) + 1)), f"{test_id}-s000")
            sessions.append({"id": f"{test_id}-l{listener:02d}", "test": test_id, "items": [str(i) for i in chosen]})
    if not key["tests"]:
        raise MsgppError(
            f"nothing to test: no enhanced estimates found in {evaluation_dir}/enhanced "
            "for the chosen separators/sources"
        )

    key_text = json.dumps(key, indent=2, sort_keys=True)
    kit_id = hashlib.sha256(key_text.encode()).hexdigest()[:12]
    key["kit_id"] = kit_id
    atomic_write_text(out / "answer_key.json", json.dumps(key, indent=2, sort_keys=True) + "\n")
    kit = {
        "kit_id": kit_id,
        "instructions": INSTRUCTIONS,
        "sessions": sessions,
        "tests": {t: {"label": f"test {t}"} for t in key["tests"]},
    }  # labels do not reveal conditions
    atomic_write_text(out / "kit.js", "window.MSGPP_KIT = " + json.dumps(kit, indent=1) + ";\n")
    return atomic_write_text(out / "index.html", templates.render("listening"))  # templates/listening.*


def choose_excerpt(truth: np.ndarray, sample_rate: int, seconds: float, rng: np.random.Generator) -> float:
    """A seeded start time among the song's loud stretches (windows within 6 dB of the loudest)."""
    length = truth.shape[-1]
    width = int(seconds * sample_rate)
    if length <= width:
        return 0.0
    power = np.concatenate([[0.0], np.cumsum(np.mean(np.square(truth, dtype=np.float64), axis=0))])
    starts = np.arange(0, length - width + 1, max(1, sample_rate // 2))
    energy = power[starts + width] - power[starts]
    loud = starts[energy >= energy.max() * 10 ** (-6 / 10)]
    return float(loud[int(rng.integers(len(loud)))]) / sample_rate


def loudness_match(a: np.ndarray, b: np.ndarray, target_dbfs: float = TARGET_RMS_DBFS) -> tuple[np.ndarray, np.ndarray]:
    """Bring both to the same RMS (so loudness does not decide), then one shared gain keeps the
    louder peak at 0.99 — nothing clips and the match holds."""

    def rms(x):
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) or 1.0

    target = 10 ** (target_dbfs / 20)
    a, b = a * (target / rms(a)), b * (target / rms(b))
    peak = max(float(np.abs(a).max()), float(np.abs(b).max()))
    if peak > 0.99:
        a, b = a * (0.99 / peak), b * (0.99 / peak)
    return a.astype(np.float32), b.astype(np.float32)


def degrade(audio: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The screening pair's bad side: low-passed at 1 kHz plus noise 15 dB below the signal."""
    from scipy import signal as sps

    sos = sps.butter(6, 1000, fs=sample_rate, output="sos")
    muffled = sps.sosfilt(sos, audio, axis=-1)
    level = np.sqrt(np.mean(np.square(audio, dtype=np.float64))) * 10 ** (-15 / 20)
    return (muffled + level * rng.standard_normal(audio.shape)).astype(np.float32)


def _excerpt(audio: np.ndarray, sample_rate: int, start_s: float, seconds: float) -> np.ndarray:
    begin = int(round(start_s * sample_rate))
    return audio[:, begin : begin + int(round(seconds * sample_rate))]


# --- analysing the answers --------------------------------------------------------------------


def read_answers(paths: list[str | os.PathLike]) -> list[dict]:
    """Every answer file (JSON exported by the page, or CSV) under the given files/folders, as
    sessions {"file", "kit_id", "listener", "session", "answers": [{"item", "choice"}]}."""
    files, seen = [], set()
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".json", ".csv") and p.is_file())
        elif path.is_file():
            found = [path]
        else:
            raise MsgppError(f"{path}: no such answer file or folder")
        for file in found:  # a file named twice, or named and inside a named folder, counts once
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    sessions = []
    for file in files:
        if file.suffix.lower() == ".csv":
            sessions += _read_csv(file)
        else:
            sessions.append(_read_answer_json(file))
    if not sessions:
        raise MsgppError("no answer files found (.json or .csv)")
    _check_unique(sessions)
    return sessions


def _check_unique(sessions: list[dict]) -> None:
    """Each listener's session counts once and answers each item once: a copied answer file or
    a repeated row would otherwise be counted twice."""
    owners: dict[tuple, str] = {}
    for session in sessions:
        who = (session["listener"], session["session"])
        same = (*who, tuple((answer["item"], answer["choice"]) for answer in session["answers"]))
        if same in owners:
            raise MsgppError(
                f"{session['file']}: the same answers of listener {who[0]!r} (session {who[1]!r}) also "
                f"come from {owners[same]}; give each listener's answers once"
            )
        owners[same] = session["file"]
        items = [answer["item"] for answer in session["answers"]]
        repeated = sorted({item for item in items if items.count(item) > 1})
        if repeated:
            raise MsgppError(f"{session['file']}: listener {who[0]!r} answers item {repeated[0]!r} more than once")


def _read_json(file: Path, what: str, fields: dict) -> dict:
    """A JSON object with these fields of these types, else one line naming the file."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise MsgppError(
            f"{file}: not readable as {what} ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
        ) from None
    if not isinstance(data, dict):
        raise MsgppError(f"{file}: not {what} (expected a JSON object)")
    for name, kind in fields.items():
        if not isinstance(data.get(name), kind):
            raise MsgppError(f"{file}: not {what}, or damaged ({name!r} missing or not a {kind.__name__})")
    return data


def _read_answer_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MsgppError(f"{file}: not a readable JSON answer file ({error})") from None
    if not isinstance(data, dict) or data.get("format") != ANSWER_FORMAT or not isinstance(data.get("answers"), list):
        raise MsgppError(f"{file}: not an msgpp listening-test answer file (format {ANSWER_FORMAT!r} expected)")
    answers = []
    for answer in data["answers"]:
        if not isinstance(answer, dict) or "item" not in answer or "choice" not in answer:
            raise MsgppError(f"{file}: every answer needs 'item' and 'choice'")
        answers.append({"item": str(answer["item"]), "choice": str(answer["choice"])})
    return {
        "file": str(file),
        "kit_id": data.get("kit_id"),
        "listener": str(data.get("listener", file.stem)),
        "session": str(data.get("session", "")),
        "answers": answers,
    }


def _read_csv(file: Path) -> list[dict]:
    sessions: dict[tuple, dict] = {}
    try:
        with open(file, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"listener", "item", "choice"} - set(reader.fieldnames or [])
            if missing:
                raise MsgppError(f"{file}: answer CSV lacks column(s) {', '.join(sorted(missing))}")
            for row in reader:
                key = (row["listener"], row.get("session", ""))
                session = sessions.setdefault(
                    key,
                    {
                        "file": str(file),
                        "kit_id": row.get("kit_id") or None,
                        "listener": key[0],
                        "session": key[1],
                        "answers": [],
                    },
                )
                session["answers"].append({"item": row["item"], "choice": row["choice"]})
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise MsgppError(f"{file}: cannot read answers ({error})") from None
    return list(sessions.values())


def preference_table(key: dict, sessions: list[dict], alpha: float = 0.05) -> list[dict]:
    """Per test: answers from listeners who passed screening, MSG share and two-tailed binomial p."""
    from scipy.stats import binomtest

    counts = {test: {"msg": 0, "n": 0, "listeners": set(), "excluded": set()} for test in key["tests"]}
    for session in sessions:
        if session["kit_id"] and key.get("kit_id") and session["kit_id"] != key["kit_id"]:
            raise MsgppError(
                f"{session['file']}: answers belong to another kit ({session['kit_id']}, this kit is {key['kit_id']})"
            )
        passed, votes = True, []
        for answer in session["answers"]:
            item, choice = answer["item"], answer["choice"].strip().upper()
            if choice not in ("A", "B"):
                raise MsgppError(f"{session['file']}: item {item}: choice must be A or B, got {answer['choice']!r}")
            if item in key["screening"]:
                passed &= key["screening"][item][choice] == "reference"
            elif item in key["items"]:
                votes.append((key["items"][item]["test"], key["items"][item][choice]))
            else:
                raise MsgppError(f"{session['file']}: unknown item {item!r} (not in this kit's answer key)")
        who = f"{session['listener']}/{session['session']}"
        for test, condition in votes:
            if passed:
                counts[test]["msg"] += condition == "msg"
                counts[test]["n"] += 1
                counts[test]["listeners"].add(who)
            else:
                counts[test]["excluded"].add(who)
    table = []
    for test, info in key["tests"].items():
        c = counts[test]
        p_value = binomtest(c["msg"], c["n"], 0.5, alternative="two-sided").pvalue if c["n"] else float("nan")
        table.append(
            {
                "test": test,
                "separator": info["separator"],
                "source": info["source"],
                "listeners": len(c["listeners"]),
                "excluded_listeners": len(c["excluded"]),
                "answers": c["n"],
                "msg_preferred": c["msg"],
                "msg_percent": 100.0 * c["msg"] / c["n"] if c["n"] else float("nan"),
                "p_value": float(p_value),
                "significant": bool(c["n"] and p_value < alpha),
            }
        )
    return table


def analyse_answers(
    kit: str | os.PathLike, answer_paths, out: str | os.PathLike | None = None, alpha: float = 0.05
) -> str:
    """Write preferences.csv / .md / .png (the paper's Fig. 2) and return the Markdown table."""
    kit = Path(kit)
    key_file = kit / "answer_key.json"
    if not key_file.is_file():
        raise MsgppError(f"{kit}: no answer_key.json (is this a folder made by `msgpp listening-test make`?)")
    alpha = check_number("--alpha", alpha, above=0, below=1)
    key = _read_json(
        key_file, "an msgpp listening-test key", {"format": str, "tests": dict, "items": dict, "screening": dict}
    )
    if key.get("format") != KEY_FORMAT:
        raise MsgppError(f"{key_file}: not an msgpp listening-test key")
    for item, entry in [*key["items"].items(), *key["screening"].items()]:
        if (
            not isinstance(entry, dict)
            or not {"A", "B"} <= set(entry)
            or (item in key["items"] and entry.get("test") not in key["tests"])
        ):
            raise MsgppError(f"{key_file}: damaged (item {item!r} lacks its A/B conditions or test)")
    for test, entry in key["tests"].items():
        if not isinstance(entry, dict) or not {"separator", "source"} <= set(entry):
            raise MsgppError(f"{key_file}: damaged (test {test!r} lacks its separator or source)")
    table = preference_table(key, read_answers(answer_paths), alpha)
    out = Path(out) if out else kit / "results"
    lines = ["test,separator,source,listeners,excluded_listeners,answers,msg_preferred,msg_percent,p_value,significant"]
    lines += [
        ",".join(
            str(row[c])
            for c in (
                "test",
                "separator",
                "source",
                "listeners",
                "excluded_listeners",
                "answers",
                "msg_preferred",
                "msg_percent",
                "p_value",
                "significant",
            )
        )
        for row in table
    ]
    atomic_write_text(out / "preferences.csv", "\n".join(lines) + "\n")
    markdown = [
        "| separator | source | listeners | answers | MSG preferred | p (two-tailed binomial) |",
        "|---|---|---|---|---|---|",
    ]
    for row in table:
        star = " *" if row["significant"] else ""
        share = f"{row['msg_percent']:.0f} %{star}" if row["answers"] else "–"
        p_value = f"{row['p_value']:.3g}" if row["answers"] else "–"
        markdown.append(
            f"| {row['separator']} | {row['source']} | {row['listeners']} | {row['answers']} | {share} | {p_value} |"
        )
    markdown.append(
        f"\n\\* p < {alpha:g}. Listeners excluded by the screening pair: "
        f"{sum(row['excluded_listeners'] for row in table)}."
    )
    text = "\n".join(markdown) + "\n"
    atomic_write_text(out / "preferences.md", text)
    _preference_figure(table, out / "preferences.png", alpha)
    return text


def _preference_figure(table: list[dict], path: Path, alpha: float) -> None:
    from msgpp.evaluation.figures import MSG_COLOR, RAW_COLOR, _pyplot, _save

    plt = _pyplot()
    labels = [f"{row['separator']}\n{row['source']}" for row in table]
    values = [row["msg_percent"] for row in table]
    figure, axis = plt.subplots(figsize=(max(4.0, 1.1 * len(table)), 3.4))
    colors = [MSG_COLOR if v >= 50 else RAW_COLOR for v in values]
    axis.bar(range(len(table)), values, color=colors)
    for x, row in enumerate(table):
        if row["significant"]:
            axis.text(x, row["msg_percent"] + 2, "*", ha="center", fontsize=14)
    axis.axhline(50, color="black", linewidth=0.8, linestyle="--")
    axis.set_xticks(range(len(table)), labels, fontsize=8)
    axis.set_ylim(0, 105)
    axis.set_ylabel("% of choices for + MSG")
    axis.set_title(f"Listening test: MSG preferred (* p < {alpha:g}, two-tailed binomial)")
    figure.tight_layout()
    _save(figure, path)
