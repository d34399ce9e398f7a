"""MSG training: the LightningModule (module.py), the data (datamodule.py, windows.py), logging
callbacks (callbacks.py), `msgpp train` / `msgpp export` (commands.py, cli.py) and the metric
the model card reports (measure.py). See docs/training.md."""
