"""Speed and memory benchmarks: each script prints ratios against a baseline measured in the
same run (``.venv/bin/python -m benchmarks.NAME``); figures in benchmarks/RESULTS.md."""
