"""Spleeter (Deezer, TensorFlow) as a msgpp separator:

- environment.py: Spleeter's own virtual environment (Python ≤ 3.11, tensorflow 2.12), built on demand;
- worker.py: the process that runs inside it (by path, never imported by msgpp): loads a model
  once, separates on demand, and runs spleeter's trainer;
- client.py: msgpp's side of the worker (start it, send songs, read the sources back);
- separator.py: `SpleeterSeparator`, the registered "spleeter" separator;
- train.py: `msgpp separators train spleeter`, with spleeter's own trainer;
- commands.py: `msgpp spleeter setup` (and the old spelling `msgpp spleeter train`).
"""
