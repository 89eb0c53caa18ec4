"""The Litestar REST API: thin handlers that parse, call `core` and serialise."""
