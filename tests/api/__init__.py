"""The API over real HTTP: endpoints, authorization matrix, isolation, schemathesis, the CLI against it."""
