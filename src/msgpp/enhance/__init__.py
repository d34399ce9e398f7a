"""The inference side: a separator's estimate in, an enhanced estimate out.

    enhancer.py      msgpp.Enhancer: the public API (arrays and files), its sample-rate bridge
    jobs.py          files: which output each input gets, checks before any model work, reading
                     in blocks, atomic writing (also used by msgpp.stems)
    weights_file.py  the enhancer's weights file (msgpp-enhancer/1): save, load, checksums
    pretrained.py    enhancers by name: shipped (msgpp/pretrained), published, or a path
    published.py     the MSG authors' published generators: download and conversion
    onnx_backend.py  ONNX export and ONNX Runtime, the Enhancer's faster CPU backend
    graph_export.py  TorchScript export, for deployment without msgpp
    commands.py      `msgpp enhance`, `export-graph`, `download`, `convert-msg`, `enhancers list`

Chunking (msgpp.overlap_add) stays outside: the separators use it as well. Nothing is imported
here, so the CLI can register the commands without loading torch.
"""
