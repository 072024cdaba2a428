"""Benchmarks and the deployment harness they share with the integration tests."""
