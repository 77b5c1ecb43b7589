"""Benchmarks and generators; run each from the top folder as python -m tools.NAME."""
