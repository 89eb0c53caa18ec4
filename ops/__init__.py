"""Operator tools: the `remotegpu` CLI, the embedded development stack and benchmarks."""
