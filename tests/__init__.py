"""msgpp's tests, laid out like the package (tests/enhance/ tests msgpp/enhance/, ...); tests/ itself holds
those of the package's top-level modules and the cross-cutting ones (the CLI, the README, the layout,
reliability, the wheel, the GPU). A package, so that the tests import their shared code as `tests.helpers`
(pytest puts the folder above tests/ on sys.path)."""
