"""RemoteGPU's test suite; every database test runs against a real Postgres."""
