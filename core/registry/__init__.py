"""Image registries: an OCI Distribution client and a Harbor API v2.0 client behind one interface."""
