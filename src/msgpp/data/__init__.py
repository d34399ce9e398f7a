"""Datasets: the embedded benchmark (plan → render → benchmark, `msgpp data`) and the MUSDB reader.

- `msgpp.data.plan`: seeded song plans (notes per stem), no audio;
- `msgpp.data.render`: FluidSynth rendering of a plan to stems, and exact int16 mixing;
- `msgpp.data.benchmark`: `generate_benchmark` / `verify_benchmark` / the manifest;
- `msgpp.data.musdb`: `open_tracks` for the embedded set, MUSDB18-HQ and MUSDB18.
"""
