"""Benchmarks run by `remotegpu bench NAME [--quick]`: each prints a table, then one JSON line of figures."""
