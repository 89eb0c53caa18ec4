"""Capacity: quotas, the capacity queue and the claims of GPUs and host ports (one at a time or in batches), with the audit that replays them."""
