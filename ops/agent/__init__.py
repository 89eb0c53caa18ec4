"""The host agent (`remotegpu agent`): reads a node's GPUs through NVML and publishes them as the node's
annotations (`core.inventory.gpu_report`), which the reconciler's inventory sync reads."""
