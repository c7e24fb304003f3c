"""Accuracy and tuning studies behind the fitter's and the noise model's defaults
(``.venv/bin/python -m studies.NAME``); figures in benchmarks/RESULTS.md."""
