"""Datasets: workspace-owned data uploaded to (or found in) a storage backend and mounted into environments."""
