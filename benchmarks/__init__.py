"""Benchmarks for ttkernels (pytest-benchmark). See benchmarks/README.md."""
