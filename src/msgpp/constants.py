"""Names and figures shared across msgpp."""

SOURCES = ("drums", "bass", "other", "vocals")  # MUSDB18 order
STEMS = ("mixture",) + SOURCES
MUSDB_SAMPLE_RATE = 44100
MSG_SAMPLE_RATE = 16000  # the paper's (and Wavenet's) rate
