"""Wavenet for music source separation (Lluís, Pons & Serra 2019) as a msgpp separator:

- model.py: the PyTorch port of the network, its configurations (WAVENET_CONFIGS), whole-song
  separation and msgpp's checkpoint format;
- keras_weights.py: reading the upstream Keras HDF5 weights into the port;
- separator.py: `WavenetSeparator`, the registered "wavenet" separator;
- train.py: `msgpp separators train wavenet`, with msgpp's separator trainer;
- commands.py: `msgpp wavenet-convert` (and the old spelling `msgpp wavenet-train`).
"""
