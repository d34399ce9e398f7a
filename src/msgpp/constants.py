"""Names and figures shared across msgpp.

Only plain values, no imports: the command modules read them while the CLI starts, before
numpy, soundfile or torch are loaded.
"""

SOURCES = ("drums", "bass", "other", "vocals")  # MUSDB18 order
STEMS = ("mixture",) + SOURCES
SUBSETS = ("train", "test")  # a MUSDB18-layout folder's subsets: <root>/<subset>/<track>/<stem>.wav
MUSDB_SAMPLE_RATE = 44100
MSG_SAMPLE_RATE = 16000  # the paper's (and Wavenet's) rate

# Audio files msgpp reads and writes with soundfile: extension → libsndfile container.
AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3", ".aiff": "AIFF", ".aif": "AIFF"}
OUTPUT_FORMATS = tuple(dict.fromkeys(container.lower() for container in AUDIO_FORMATS.values()))  # --format
OUTPUT_SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")  # --subtype
# What a write does with a peak above full scale in a format that clips: stop, hard-clip, or
# scale the whole signal to a 0.999 peak.
CLIP_POLICIES = ("error", "clip", "normalize")

BACKENDS = ("auto", "torch", "onnxruntime")  # the Enhancer's (msgpp.enhance.enhancer)
