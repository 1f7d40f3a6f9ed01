"""What a fitted model says about images: load a model saved by `run --save-models`, read each image
against the validation scale (verdict, severity, where), and write a self-contained QC page."""
