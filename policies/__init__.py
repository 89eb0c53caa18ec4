"""Pure decisions over small snapshot types: placement, admission and queue order, pricing, idle policies.

Nothing here performs I/O or imports the rest of RemoteGPU, so every rule can be tested on its own.
"""
