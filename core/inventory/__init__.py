"""Inventory: hosts and GPUs as synced from the cluster's nodes, their maintenance and views."""
