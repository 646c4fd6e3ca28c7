"""The seeded simulation of the relay (issue 11): ``python -m tests.simulation --help``."""
