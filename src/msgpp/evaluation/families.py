"""Separator families, and the paper's claim about the sign of their rolloff errors.

Waveform separators add high-frequency noise (rolloff too high: positive cents); spectrogram
separators lose upper partials (negative). Hybrids make no prediction.
"""
from __future__ import annotations

FAMILIES = {
    "demucs_v2": "waveform",
    "wavenet": "waveform",
    "hdemucs_v3": "hybrid",
    "openunmix": "spectrogram",
    "spleeter": "spectrogram",
}
EXPECTED_SIGN = {"waveform": +1, "spectrogram": -1}


def family(separator: str) -> str:
    """The family of a registered separator; "unknown" for others (a name's prefix is tried too,
    so "openunmix_small" is a spectrogram separator)."""
    if separator in FAMILIES:
        return FAMILIES[separator]
    for name, kind in FAMILIES.items():
        if separator.startswith(name):
            return kind
    return "unknown"


def expected_sign(separator: str) -> int:
    """+1, −1, or 0 where the paper predicts nothing."""
    return EXPECTED_SIGN.get(family(separator), 0)
