"""Model presets: a named set of constructor arguments, which a config dict may start from."""

from __future__ import annotations


def preset_config(kind: str, presets: dict[str, dict], preset_or_config: str | dict, overrides: dict) -> dict:
    """The constructor arguments for a preset name ("paper", "small") or a config dict, then
    `overrides` on top. A config dict may name a preset under "preset" ({"preset": "small",
    <overrides>}: that preset with some arguments changed). An unknown preset is a KeyError naming
    `kind` and the choices."""
    config = {"preset": preset_or_config} if isinstance(preset_or_config, str) else dict(preset_or_config)
    if "preset" in config:
        preset = config.pop("preset")
        if preset not in presets:
            raise KeyError(f"unknown {kind} preset {preset!r}; choose one of {sorted(presets)}")
        config = {**presets[preset], **config}
    return {**config, **overrides}
