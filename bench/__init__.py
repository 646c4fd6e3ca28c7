"""Benchmarks for payment-events (run with `make bench`)."""
