"""Environments: the spec users write, the desired state they set, the lifecycle the reconciler follows, and the views of both."""
