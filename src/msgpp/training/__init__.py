"""MSG training: the LightningModule (module.py), the data (datamodule.py, windows.py), logging
callbacks (callbacks.py), model selection (selection.py), checkpoints and their export
(checkpoints.py), and `msgpp train` / `msgpp export` (commands.py, on the LightningCLI of cli.py);
the metric the model card reports is msgpp.evaluation.mrstft_distance. See docs/training.md."""
