"""Benchmarks shipped with the package: the synthetic Harbin scenario, the baselines and the runner."""
