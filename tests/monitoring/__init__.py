"""Monitoring against a real Prometheus: the DCGM series of the simulated cluster, GPU metrics, idle stop."""
