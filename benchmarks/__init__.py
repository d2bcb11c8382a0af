"""Benchmarks for the CLIP inversion engine; nothing here is imported by `inversion_core`."""
