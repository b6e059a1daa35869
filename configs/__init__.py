"""Experiment configs, one ``get_config(arg)`` per modality (run from the repository root)."""
