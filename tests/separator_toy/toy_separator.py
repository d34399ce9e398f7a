"""A third-party separator for the entry-point test: splits the mixture by fixed gains."""
from msgpp.separators import Separator, WeightsInfo


class ToyGainSeparator(Separator):
    name = "toy_gain"
    family = "waveform"
    description = "test double: each source is a fixed fraction of the mixture"
    default_sources = ("low", "high")
    default_sample_rate = 8000

    @classmethod
    def load(cls, weights=None, device="cpu"):
        import hashlib

        import torch

        info = WeightsInfo(location="toy", sha256=hashlib.sha256(b"toy").hexdigest())
        return cls(torch.nn.Linear(1, 1), info, audio_channels=1)

    @classmethod
    def weights_info(cls, weights=None):
        return cls.load(weights).weights

    def forward_chunks(self, chunks):
        import torch

        return torch.stack([0.25 * chunks, 0.75 * chunks], dim=1)
