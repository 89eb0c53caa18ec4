"""The leader-elected reconciler that turns desired environment state into claims and cluster objects."""
