"""msgpp — make separated music sound better.

A GAN post-processor (after "Music Separation Enhancement with Generative Modeling", ISMIR 2022)
that maps a source separator's estimate to a cleaner estimate of the same source.

    import msgpp
    enhancer = msgpp.Enhancer.from_pretrained("bass")
    enhanced = enhancer(estimate, sample_rate)

    stems = msgpp.separate_song(mixture, sample_rate)     # separate, then enhance each stem
    msgpp.separate_file("song.mp3", "stems/")             # stems/song/{drums,bass,other,vocals}.wav
"""

from importlib import import_module

__version__ = "0.1.0"

# Heavy submodules load on first use, so `import msgpp` and the CLI start fast.
_LAZY = {
    "Enhancer": ("msgpp.enhance.enhancer", "Enhancer"),
    "MsgppError": ("msgpp.errors", "MsgppError"),
    "separators": ("msgpp.separators", None),
    "separate_song": ("msgpp.stems", "separate_song"),
    "separate_file": ("msgpp.stems", "separate_file"),
    "StemSplitter": ("msgpp.stems", "StemSplitter"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'msgpp' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = import_module(module_name)
    return module if attr is None else getattr(module, attr)


__all__ = ["Enhancer", "MsgppError", "StemSplitter", "separate_file", "separate_song", "separators", "__version__"]
