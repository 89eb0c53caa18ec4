"""Contract fakes of outside systems that cannot run here, each following its product's published API."""
