"""Enhancer test helpers: a tiny generator saved in msgpp's inference format."""

from __future__ import annotations

from pathlib import Path

import torch

from msgpp.enhance.weights_file import save_inference_file
from msgpp.models.generator import build_generator
from tests.helpers.training import TINY_GENERATOR


def tiny_weights(folder: Path, seed: int = 0, sample_rate: int = 16000) -> Path:
    """A tiny bass generator (at `sample_rate`, initialised from `seed`) written as msg-bass-<sha8>.pt."""
    torch.manual_seed(seed)
    return save_generator(folder, build_generator(TINY_GENERATOR, sample_rate=sample_rate))


def save_generator(folder: Path, generator, stem: str = "msg-bass", state_dict: dict | None = None, **facts) -> Path:
    """`generator` (its weights, or `state_dict`) written as a bass enhancer file <stem>-<sha8>.pt;
    `facts` go to save_inference_file (e.g. training=...)."""
    return save_inference_file(
        folder,
        stem,
        source="bass",
        sample_rate=generator.sample_rate,
        generator_config=generator.config,
        state_dict=generator.state_dict() if state_dict is None else state_dict,
        **facts,
    )
