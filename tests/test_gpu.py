"""On a CUDA device: the shipped enhancer gives the CPU's result, and a training step runs.

Deselected by default (pyproject.toml's addopts); `make test-gpu` (`pytest -m gpu`) selects them.
Selected on a machine where torch sees no CUDA device, they fail with one line saying so rather
than skip, so a GPU job cannot pass without having run them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msgpp.enhance.enhancer import Enhancer
from tests.helpers.training import make_fake_cache, tiny_datamodule, tiny_module, tiny_trainer

pytestmark = pytest.mark.gpu


def require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.fail(
            f"the gpu tests need a CUDA device, and torch {torch.__version__} sees none "
            "(torch.cuda.is_available() is False); run them on a machine with one and a CUDA build of torch",
            pytrace=False,
        )
    return torch.device("cuda")


def song(seconds: float = 2.0, rate: int = 44100, seed: int = 0) -> np.ndarray:
    """A stereo bass line with a little noise: (2, samples) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    bass = 0.4 * np.sin(2 * np.pi * 55.0 * t) * (1 + np.sin(2 * np.pi * 2.0 * t)) / 2
    left = bass + 0.01 * rng.standard_normal(t.size)
    return np.stack([left, 0.8 * left]).astype(np.float32)


def test_enhancer_on_cuda_equals_the_cpu_result(monkeypatch):
    cuda = require_cuda()
    # Full float32 on both sides: by default cuDNN may run float32 convolutions in TF32 (10-bit
    # mantissa) on Ampere and later, which is a precision choice, not the result under test.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    audio = song()
    options = dict(backend="torch", segment=1.0, overlap=0.25)
    on_cpu = Enhancer.from_pretrained("bass", device="cpu", **options)(audio, 44100)
    enhancer = Enhancer.from_pretrained("bass", device=cuda, **options)
    assert next(enhancer.generator.parameters()).device.type == "cuda"
    on_cuda = enhancer(audio, 44100)
    assert on_cuda.shape == on_cpu.shape == audio.shape and on_cuda.dtype == np.float32
    assert np.all(np.isfinite(on_cuda))
    assert np.max(np.abs(on_cpu - audio)) > 1e-3  # the model changed the signal: the comparison means something
    np.testing.assert_allclose(on_cuda, on_cpu, rtol=0, atol=1e-4)
    # a torch tensor on the GPU comes back on the GPU, with the same values
    tensor = enhancer(torch.from_numpy(audio).to(cuda), 44100)
    assert tensor.device.type == "cuda"
    np.testing.assert_allclose(tensor.cpu().numpy(), on_cuda, rtol=0, atol=1e-6)


def test_a_training_step_runs_on_cuda(tmp_path):
    import lightning as L

    require_cuda()

    class Where(L.Callback):
        """The module's device and losses while it trains (Lightning moves it back to the CPU after fit)."""

        def __init__(self):
            self.devices, self.losses = set(), []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.devices.add(pl_module.device.type)
            self.losses.append(float(trainer.callback_metrics["train/g_loss"]))

    root, cache = make_fake_cache(tmp_path / "data")
    L.seed_everything(0)
    module, where = tiny_module(), Where()
    before = {name: value.detach().clone() for name, value in module.generator.state_dict().items()}
    trainer = tiny_trainer(tmp_path / "run", max_batches=2, accelerator="gpu", devices=1, callbacks=[where])
    trainer.fit(module, tiny_datamodule(root, cache))
    assert trainer.global_step == 4 and module.batches_done == 2  # two optimiser steps per batch
    assert where.devices == {"cuda"} and len(where.losses) == 2 and np.all(np.isfinite(where.losses))
    after = {name: value.detach().cpu() for name, value in module.generator.state_dict().items()}
    assert all(torch.isfinite(value).all() for value in after.values() if value.is_floating_point())
    assert any(not torch.equal(before[name], after[name]) for name in before)  # the generator learned
