"""Monitoring: GPU utilisation read from Prometheus (`prometheus`: the HTTP API client; `gpu_metrics`: the
DCGM exporter's series joined to our pods), and the idle picture of an environment (`idle`)."""
