"""Runs as one pandas row each: from ``results.json`` files (``local``) or the W&B API (``wandb_api``), both
through the same record -> row builder (``records``), each (config, seed) once (``dedupe``); and a run's
per-image validation predictions (``predictions``)."""
