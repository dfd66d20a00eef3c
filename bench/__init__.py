"""Benchmarks run from the source tree (`python -m core bench quality`, `python bench/quality.py`)."""
