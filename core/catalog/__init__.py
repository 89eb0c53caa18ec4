"""The image catalog: which images a workspace may use and how a name resolves to a reference."""
