"""The HTML report: one self-contained folder (index.html + figures/ + audio/ + tables/).

Paper analogues: Table 1 (onset F1), Fig. 4 (mean rolloff error), Fig. 5 (rolloff histograms),
Fig. 3 (spectrograms with the rolloff line), plus SI-SDR (and museval SDR when computed), every
number with a seeded bootstrap 95 % interval over songs, and audio players for a few excerpts
(ground truth, raw, enhanced). A small script on the page counts the figures that loaded and
the players that can play, so a headless browser can check the page (see
tests/evaluation/test_report.py).
"""

from __future__ import annotations

import html
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from msgpp.evaluation import figures, summary, templates
from msgpp.evaluation.results import load_frames
from msgpp.files import atomic_write_text

log = logging.getLogger(__name__)

METRICS = {
    "onset_f1": ("onset-strength F1", "higher is better", 2),
    "rolloff_abs_cents": ("mean |rolloff error| (cents)", "lower is better", 0),
    "rolloff_cents": ("mean signed rolloff error (cents)", "closer to 0 is better", 0),
    "si_sdr": ("SI-SDR (dB)", "higher is better", 2),
    "mrstft": ("multi-resolution STFT distance", "lower is better", 3),
    "sdr": ("museval SDR (dB, median over 1-s frames)", "higher is better", 2),
}


def build_report(
    out: str | os.PathLike,
    table,
    run_info: dict,
    *,
    seed: int = 0,
    excerpts: int = 4,
    excerpt_seconds: float = 7.0,
) -> Path:
    """Write <out>/index.html and its figures, tables and audio; returns the page's path."""
    out = Path(out)
    rows = summary.current_rows(table, run_info)
    if not rows:
        raise ValueError("no result rows for this run: nothing to report")
    figures_dir, tables_dir = out / "figures", out / "tables"
    sections = [_header(run_info, rows)]

    f1 = summary.metric_cells(rows, "onset_f1", seed)
    _write_table(tables_dir / "table1_onset_f1", f1, "onset_f1")
    sections.append(
        _section(
            "Table 1 — onset-strength F1, raw → +MSG",
            "Onset strength (librosa, 16 kHz, hop 256) thresholded at 0.75; exact-frame TP/FP/FN; "
            "F1 = TP / (TP + ½(FP + FN)). Mean over songs; Δ = +MSG − raw paired by song, 95 % bootstrap "
            "interval in brackets; green/red: the interval excludes 0 (better/worse).",
            _paper_table(f1, "onset_f1", 2)
            + _image(
                figures.metric_bars(
                    f1, "onset F1", "Onset-strength F1 (higher is better)", figures_dir / "onset_f1.png"
                ),
                out,
            ),
        )
    )

    rolloff = summary.metric_cells(rows, "rolloff_abs_cents", seed)
    signed = summary.metric_cells(rows, "rolloff_cents", seed)
    _write_table(tables_dir / "rolloff_abs_cents", rolloff, "rolloff_abs_cents")
    _write_table(tables_dir / "rolloff_cents", signed, "rolloff_cents")
    sections.append(
        _section(
            "Fig. 4 — mean spectral-rolloff error per separator and source",
            "98 % rolloff, n_fft 2048, hop 512 at 16 kHz; frames where the ground truth is below −40 dBFS "
            "are dropped; error = 1200·log2(f_est / f_truth) cents.",
            _image(
                figures.metric_bars(
                    rolloff,
                    "mean |error| (cents)",
                    "Mean absolute rolloff error (lower is better)",
                    figures_dir / "fig4_rolloff_abs.png",
                ),
                out,
            )
            + _image(
                figures.metric_bars(
                    signed,
                    "mean error (cents)",
                    "Mean signed rolloff error (0 is best)",
                    figures_dir / "fig4_rolloff_signed.png",
                ),
                out,
            )
            + "<h3>|error| (cents)</h3>"
            + _paper_table(rolloff, "rolloff_abs_cents", 0)
            + "<h3>signed error (cents)</h3>"
            + _paper_table(signed, "rolloff_cents", 0),
        )
    )

    histograms = ""
    for source in summary.ordered_sources(rows):
        distributions = _frame_distributions(out / "frames", rows, source)
        if distributions:
            histograms += _image(
                figures.rolloff_histograms(
                    distributions, source, figures_dir / f"fig5_rolloff_hist_{source}.png", cells=signed
                ),
                out,
            )
    sections.append(
        _section(
            "Fig. 5 — per-frame rolloff error distributions",
            "All kept frames of all test songs pooled, per separator (bass first, as in the paper); the legend "
            "gives the mean over songs with its 95 % bootstrap interval.",
            histograms,
        )
    )

    checks = summary.sign_checks(rows, seed)
    sections.append(
        _section(
            "Claim check — waveform separators skew positive, spectrogram separators negative",
            "Mean signed rolloff error of the raw estimates over songs with its 95 % interval. "
            "'agrees': the interval excludes 0 on the predicted side; 'contradicts': on the other side.",
            _sign_table(checks),
        )
    )
    _write_sign_table(tables_dir / "sign_check", checks)

    if any(np.isfinite(r.get("mrstft", float("nan"))) for r in rows):
        distance = summary.metric_cells(rows, "mrstft", seed)
        _write_table(tables_dir / "mrstft", distance, "mrstft")
        sections.append(
            _section(
                "Multi-resolution STFT distance to the ground truth",
                "MSG's own reconstruction loss (spectral convergence + log magnitude at three resolutions) on whole "
                "songs, 16 kHz mono, peak-normalised: how close the spectra are, artifacts included.",
                _image(
                    figures.metric_bars(
                        distance, "MR-STFT distance", "MR-STFT distance (lower is better)", figures_dir / "mrstft.png"
                    ),
                    out,
                )
                + _paper_table(distance, "mrstft", 3),
            )
        )

    sisdr = summary.metric_cells(rows, "si_sdr", seed)
    _write_table(tables_dir / "si_sdr", sisdr, "si_sdr")
    body = _image(
        figures.metric_bars(sisdr, "SI-SDR (dB)", "SI-SDR (higher is better)", figures_dir / "si_sdr.png"), out
    ) + _paper_table(sisdr, "si_sdr", 2)
    if any(np.isfinite(r["sdr"]) for r in rows):
        sdr = summary.metric_cells(rows, "sdr", seed)
        _write_table(tables_dir / "sdr", sdr, "sdr")
        body += "<h3>museval SDR (dB, MUSDB protocol)</h3>" + _paper_table(sdr, "sdr", 2)
    else:
        body += "<p class='note'>museval SDR/SIR/SAR not computed (run <code>msgpp evaluate --museval</code>).</p>"
    sections.append(
        _section(
            "SI-SDR (and SDR)",
            "Both are blind to the artifacts above (the paper's point); shown for completeness.",
            body,
        )
    )

    sections.append(
        _section(
            "Listen — spectrograms with the rolloff line (Fig. 3) and excerpts",
            f"{excerpt_seconds:g}-s excerpts (the loudest stretch of the ground truth). The three players of an "
            "excerpt share one gain, so their loudness compares; spectrograms at 16 kHz mono.",
            _excerpts(out, rows, run_info, excerpts, excerpt_seconds, seed),
        )
    )

    # templates/report.{html,css,js}; its script counts loaded figures and playable players into
    # #page-check, which the headless-browser test reads.
    page = templates.render("report", title="msgpp evaluation report", body="\n".join(sections))
    return atomic_write_text(out / "index.html", page)


# --- sections ---------------------------------------------------------------------------------


def _header(run_info: dict, rows) -> str:
    enhancers = run_info.get("enhancers", {})
    items = []
    for separator in summary.ordered_separators(rows):
        info = run_info["separators"][separator]
        unseen = [
            s
            for s, e in enhancers.items()
            if e.get("training_separators") and separator not in e["training_separators"]
        ]
        note = f" — unseen in training of the {', '.join(unseen)} enhancer(s)" if unseen else ""
        items.append(
            f"<li><b>{_e(separator)}</b> ({_e(info['family'])}, weights {_e(info['weights_id'])}){_e(note)}</li>"
        )
    enh = (
        "<ul>"
        + (
            "".join(
                f"<li><b>{_e(s)}</b>: {_e(e['name'])} (id {_e(e['id'])})</li>" for s, e in sorted(enhancers.items())
            )
            or "<li>none: raw estimates only</li>"
        )
        + "</ul>"
    )
    if enhancers:
        enh += (
            "<p>The enhancers ran on the 16 kHz mono downmix of each estimate (<code>--mono16k</code>).</p>"
            if run_info.get("enhance_mono16k")
            else "<p>The enhancers ran on the full-rate estimates.</p>"
        )
    tracks = run_info.get("tracks", [])
    return (
        "<h1>msgpp evaluation report</h1>"
        f"<p>Raw separator estimates vs MSG-enhanced estimates vs ground truth on {len(tracks)} test song(s) "
        f"of <code>{_e(run_info.get('root', ''))}</code>. "
        "Metrics at 16 kHz mono, peak-normalised (the paper's protocol). "
        "Intervals: 95 % percentile bootstrap over songs (seeded).</p>"
        f"<h3>Separators</h3><ul>{''.join(items)}</ul><h3>Enhancers</h3>{enh}"
        "<p>Data: <a href='results.csv'>results.csv</a> (one row per song × separator × source × variant), "
        "<a href='tables/'>tables/</a> (CSV + Markdown).</p>"
    )


def _section(title: str, caption: str, body: str) -> str:
    anchor = "".join(c if c.isalnum() else "-" for c in title.lower())[:40]
    return f"<section id='{anchor}'><h2>{_e(title)}</h2><p class='caption'>{_e(caption)}</p>{body}</section>"


def _image(path: Path, out: Path) -> str:
    relative = path.relative_to(out).as_posix()
    return f"<figure><img src='{_e(relative)}' alt='{_e(path.stem)}' class='figure'></figure>"


def _paper_table(cells, metric: str, digits: int) -> str:
    """The paper's shape: sources as rows, separators as columns, 'raw → +MSG' in each cell."""
    separators = list(dict.fromkeys(c.separator for c in cells))
    sources = list(dict.fromkeys(c.source for c in cells))
    head = "".join(f"<th>{_e(s)}</th>" for s in separators)
    body = ""
    for source in sources:
        body += f"<tr><th>{_e(source)}</th>"
        for separator in separators:
            cell = next((c for c in cells if c.source == source and c.separator == separator), None)
            body += f"<td>{_cell_html(cell, digits, metric)}</td>"
        body += "</tr>"
    return f"<table class='results' data-metric='{metric}'><tr><th>source</th>{head}</tr>{body}</table>"


# +1: higher is better; −1: lower is better; 0: closer to zero is better.
DIRECTIONS = {"onset_f1": +1, "si_sdr": +1, "sdr": +1, "rolloff_abs_cents": -1, "rolloff_cents": 0, "mrstft": -1}


def _cell_html(cell, digits: int, metric: str = "") -> str:
    """'raw → msg' with the paired difference; a change whose interval excludes 0 is coloured
    green when it is an improvement and red when it is not."""
    if cell is None:
        return "–"
    raw = f"{cell.raw.mean:.{digits}f}" if cell.raw.n else "–"
    if cell.msg is None:
        interval = f"[{cell.raw.low:.{digits}f}, {cell.raw.high:.{digits}f}]"
        return f"{raw} <span class='ci'>{interval}</span> <span class='ci'>(raw only)</span>"
    delta = cell.delta
    if not delta or not delta.n:
        return f"{raw} → <b>{cell.msg.mean:.{digits}f}</b>"
    css = ""
    if delta.n > 1 and (delta.low > 0 or delta.high < 0):
        direction = DIRECTIONS.get(metric, +1)
        better = abs(cell.msg.mean) < abs(cell.raw.mean) if direction == 0 else delta.mean * direction > 0
        css = " class='better'" if better else " class='worse'"
    return (
        f"{raw} → <b{css}>{cell.msg.mean:.{digits}f}</b>"
        f"<br><span class='ci'>Δ {delta.mean:+.{digits}f} "
        f"[{delta.low:+.{digits}f}, {delta.high:+.{digits}f}], n={delta.n}</span>"
    )


def _sign_table(checks) -> str:
    rows = "".join(
        f"<tr><td>{_e(c.separator)}</td><td>{_e(c.family)}</td><td>{_e(c.source)}</td>"
        f"<td>{'+' if c.expected > 0 else '−' if c.expected < 0 else '·'}</td>"
        f"<td>{_e(c.estimate.format(0))}</td>"
        f"<td class='verdict {c.verdict.replace(' ', '-')}'>{_e(c.verdict)}</td></tr>"
        for c in checks
    )
    return (
        "<table class='results' data-metric='sign-check'><tr><th>separator</th><th>family</th><th>source</th>"
        f"<th>predicted sign</th><th>mean error, cents [95 % CI]</th><th>verdict</th></tr>{rows}</table>"
    )


def _frame_distributions(frames_dir: Path, rows, source: str) -> dict[str, dict[str, np.ndarray]]:
    distributions: dict[str, dict[str, list]] = {}
    for row in rows:
        if row["source"] != source:
            continue
        values = load_frames(frames_dir, row)
        if values is not None and values.size:
            distributions.setdefault(row["separator"], {}).setdefault(row["variant"], []).append(values)
    ordered = summary.ordered_separators([r for r in rows if r["separator"] in distributions])
    return {s: {v: np.concatenate(parts) for v, parts in distributions[s].items()} for s in ordered}


# --- excerpts: audio players and Fig. 3 -------------------------------------------------------


def _excerpts(out: Path, rows, run_info: dict, count: int, seconds: float, seed: int) -> str:
    from msgpp.audio import load_audio, save_audio
    from msgpp.evaluation import metrics
    from msgpp.evaluation.evaluate import EnhancerSpec, enhanced_path, load_truth, match_format
    from msgpp.separators.cache import find_estimates

    picks = _pick_excerpts(rows, count, seed)
    if not picks:
        return "<p class='note'>No excerpts.</p>"
    root, cache, subset = Path(run_info["root"]), Path(run_info["cache"]), run_info.get("subset", "test")
    html_parts = []
    for separator, source, track in picks:
        try:
            estimate_paths = find_estimates(cache, separator, subset, run_info["separators"][separator]["weights_id"])
            raw, rate = load_audio(estimate_paths[track][source])
            truth, truth_rate = load_truth(root, subset, track, source)
        except Exception as error:  # a report must not die on one missing file
            log.warning("excerpt %s/%s/%s skipped: %s", separator, track, source, error)
            continue
        signals = {"ground truth": (truth, truth_rate), "raw": (raw, rate)}
        enhancer = run_info.get("enhancers", {}).get(source)
        if enhancer:
            spec = EnhancerSpec(source=source, id=enhancer["id"], name=enhancer["name"], load=lambda: None)
            path = enhanced_path(out, spec, separator, run_info["separators"][separator]["weights_id"], subset, track)
            if path.is_file():
                msg, msg_rate = load_audio(path)
                if (msg_rate, msg.shape[0]) != (rate, raw.shape[0]):  # 16-kHz-mono enhancement: hear all alike
                    signals = {
                        label: (match_format(a, r, msg_rate, msg.shape[0]), msg_rate)
                        for label, (a, r) in signals.items()
                    }
                signals["+MSG"] = (msg, msg_rate)
        start, stop = _loudest_window(truth, truth_rate, seconds)
        clips = {label: audio[:, int(start * r) : int(stop * r)] for label, (audio, r) in signals.items()}
        gain = min(
            1.0,
            0.99 / max(float(np.abs(c).max()) for c in clips.values()) if any(c.size for c in clips.values()) else 1.0,
        )
        name = f"{separator}_{source}_{_slug(track)}"
        players = []
        for label, clip in clips.items():
            file = out / "audio" / f"{name}_{_FILE_LABELS[label]}.wav"
            save_audio(file, clip * gain, signals[label][1], subtype="PCM_16")
            players.append(
                f"<div class='player'><span>{_e(label)}</span><audio controls preload='metadata' "
                f"src='{_e(file.relative_to(out).as_posix())}'></audio></div>"
            )
        mono = {label: metrics.prepare(clip, signals[label][1]) for label, clip in clips.items()}
        figure = figures.spectrogram_with_rolloff(
            mono,
            metrics.MSG_SAMPLE_RATE,
            out / "figures" / f"fig3_{name}.png",
            title=f"{track} — {source} — {separator} ({start:.1f}–{stop:.1f} s)",
        )
        html_parts.append(
            f"<div class='excerpt'><h3>{_e(track)} · {_e(source)} · {_e(separator)}</h3>"
            f"{''.join(players)}{_image(figure, out)}</div>"
        )
    return "".join(html_parts) or "<p class='note'>No excerpts.</p>"


def _pick_excerpts(rows, count: int, seed: int) -> list[tuple[str, str, str]]:
    """Round-robin over sources (enhanced ones first) and separators; seeded song choice."""
    rng = np.random.default_rng(seed)
    enhanced_sources = {r["source"] for r in rows if r["variant"] == "msg"}
    sources = sorted(summary.ordered_sources(rows), key=lambda s: s not in enhanced_sources)
    separators = summary.ordered_separators(rows)
    combos: list[tuple[str, str]] = []
    for i in range(len(sources) * len(separators)):  # walk both lists diagonally: varied pairs first
        pair = (separators[(i + i // len(sources)) % len(separators)], sources[i % len(sources)])
        if pair not in combos:
            combos.append(pair)
    picks = []
    for separator, source in combos[:count]:
        tracks = sorted({r["track"] for r in rows if r["separator"] == separator and r["source"] == source})
        if tracks:
            picks.append((separator, source, tracks[int(rng.integers(len(tracks)))]))
    return picks


def _loudest_window(audio: np.ndarray, sample_rate: int, seconds: float) -> tuple[float, float]:
    """(start, stop) in seconds of the loudest `seconds`-long window on a 0.5-s grid."""
    duration = audio.shape[-1] / sample_rate
    if duration <= seconds:
        return 0.0, duration
    power = np.mean(np.square(audio, dtype=np.float64), axis=0)
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    width = int(seconds * sample_rate)
    starts = np.arange(0, audio.shape[-1] - width + 1, int(0.5 * sample_rate))
    energy = cumulative[starts + width] - cumulative[starts]
    start = int(starts[int(np.argmax(energy))]) / sample_rate
    return start, start + seconds


# --- tables as files --------------------------------------------------------------------------


def _write_table(stem: Path, cells, metric: str) -> None:
    lines = ["separator,source,variant,n,mean,ci_low,ci_high"]
    for c in cells:
        for variant, estimate in (("raw", c.raw), ("msg", c.msg), ("msg_minus_raw", c.delta)):
            if estimate is not None and estimate.n:
                lines.append(
                    f"{c.separator},{c.source},{variant},{estimate.n},{estimate.mean:.6g},{estimate.low:.6g},{estimate.high:.6g}"
                )
    atomic_write_text(stem.with_suffix(".csv"), "\n".join(lines) + "\n")
    separators = list(dict.fromkeys(c.separator for c in cells))
    sources = list(dict.fromkeys(c.source for c in cells))
    digits = METRICS.get(metric, ("", "", 2))[2]
    markdown = ["| source | " + " | ".join(separators) + " |", "|---" * (len(separators) + 1) + "|"]
    for source in sources:
        row = []
        for separator in separators:
            c = next((x for x in cells if x.source == source and x.separator == separator), None)
            if c is None:
                row.append("–")
            elif c.msg is None:
                row.append(f"{c.raw.mean:.{digits}f} (raw only)")
            else:
                row.append(f"{c.raw.mean:.{digits}f} → {c.msg.mean:.{digits}f}")
        markdown.append(f"| {source} | " + " | ".join(row) + " |")
    atomic_write_text(stem.with_suffix(".md"), "\n".join(markdown) + "\n")


def _write_sign_table(stem: Path, checks) -> None:
    lines = ["separator,family,source,expected_sign,n,mean_cents,ci_low,ci_high,verdict"]
    for c in checks:
        e = c.estimate
        lines.append(
            f"{c.separator},{c.family},{c.source},{c.expected},{e.n},{e.mean:.6g},{e.low:.6g},{e.high:.6g},{c.verdict}"
        )
    atomic_write_text(stem.with_suffix(".csv"), "\n".join(lines) + "\n")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


_FILE_LABELS = {"ground truth": "truth", "raw": "raw", "+MSG": "msg"}


def _slug(text: str) -> str:
    """A file-name-safe form of a track name (long names get a checksum suffix to stay unique)."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
    return cleaned if len(cleaned) <= 48 else f"{cleaned[:40]}-{zlib.crc32(text.encode()) % 100000:05d}"
