"""MODEL_CARD.md for a separator trained here: what it is, how it was made, how well it separates
(the score table of score_table.py)."""

from __future__ import annotations

import json
from pathlib import Path

from msgpp.evaluation.families import expected_sign_text
from msgpp.files import atomic_write_bytes
from msgpp.separators.base import Separator, WeightsInfo
from msgpp.separators.score_table import format_table


def write_model_card(
    folder: Path,
    separator: Separator,
    architecture: dict,
    info: WeightsInfo,
    training: dict,
    scores: dict,
    command: str,
) -> Path:
    parameters = sum(p.numel() for p in separator.parameters() if p.requires_grad)
    improvements = {source: row["improvement"] for source, row in scores["sources"].items()}
    failing = [source for source, value in improvements.items() if not value > 0]
    verdict = (
        "It truly separates: every source's SI-SDR improves on the mixture's (table below)."
        if not failing
        else f"It does NOT improve on the mixture for: {', '.join(failing)} (table below); "
        "more training is needed there."
    )
    sizes = {name: (Path(folder) / name).stat().st_size for name in info.files if (Path(folder) / name).is_file()}
    text = f"""# {separator.name} — small model trained with msgpp

{separator.description}.

- family: **{separator.family}**; native rate {separator.sample_rate} Hz, {separator.audio_channels} channels;
  sources: {", ".join(separator.sources)}
- parameters: {parameters:,}; files: {", ".join(f"`{n}` ({s / 1e6:.2f} MB)" for n, s in sorted(sizes.items()))}
- weights fingerprint (cache key): `{info.sha256}` (id `{info.id}`); every file is listed in `SHA256SUMS`
- format: the upstream project's own (see docs/separators.md); load it with
  `msgpp.separators.get("{separator.name}")` or `--weights separators/{separator.name}`

A deliberately small configuration of the real architecture, trained for minutes on a shared
2-core CPU on the embedded synthetic benchmark: far from the published models' quality, and with
its family's typical artifacts. {verdict}

## Architecture (constructor arguments)
```json
{json.dumps(architecture, indent=2, sort_keys=True, default=str)}
```

## Training
Command: `{command}`

The run stopped at {training.get("steps")} steps (wall-time bound). Same seed, same steps, same
weights on CPU: to reproduce it exactly, run the command with `--steps {training.get("steps")} --max-minutes 0`.

```json
{json.dumps(training, indent=2, sort_keys=True, default=str)}
```

## Separation quality on the {scores["subset"]} songs ({scores["tracks"]} songs)
SI-SDR over both channels against the true source; "mixture" is the SI-SDR of the unprocessed
mixture, so the improvement is what the separator adds. Rolloff error: the paper's metric (16 kHz
mono, peak-normalised, silent frames dropped), mean over songs; expected sign for this family:
{expected_sign_text(separator.family)}.

{format_table(scores)}
"""
    return atomic_write_bytes(Path(folder) / "MODEL_CARD.md", text.encode())
