"""The reliability suite: `remotegpu chaos` churns environments under injected faults and checks every invariant."""
