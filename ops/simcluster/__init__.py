"""A simulated Kubernetes cluster: an HTTP server speaking the Kubernetes REST API, with simulated
kubelets and a scheduler, for `remotegpu dev`, the tests and the benchmarks."""
