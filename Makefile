# The two commands a newcomer needs:  make run  (the main job: the demo)  and  make test  (everything).
# Each does its own set-up: virtualenv + pinned dependencies (scripts/bootstrap), PostgreSQL and Kafka
# (scripts/services up). Works on a fresh Debian/Ubuntu machine with Python >= 3.11, Java 17 and Maven.
.PHONY: run test lint typecheck unit lowest pythons services services-down status bench chaos schemas simulate

VENV := .venv/bin

run: services
	$(VENV)/payment-events demo

test: services lint typecheck
	$(VENV)/pytest

lint: .venv
	$(VENV)/ruff check src tests bench examples

typecheck: .venv
	$(VENV)/mypy

unit: .venv
	$(VENV)/pytest tests/unit

# The unit tests with every direct dependency at its lowest allowed version (uv, lowest-direct).
lowest: .venv
	scripts/lowest-versions

# The unit tests under every Python >= 3.11 found on this machine (PATH or pyenv).
pythons: .venv
	scripts/test-pythons

services: .venv
	scripts/services up

services-down:
	scripts/services down

status:
	scripts/services status

bench: services
	$(VENV)/python -m bench

# The relay simulation's long mode: 10 seeds of 1,000,000 steps (make test runs 100,000 of one seed).
simulate: .venv
	$(VENV)/python -m tests.simulation --seed 1 --seeds 10 --steps 1000000

chaos: services
	$(VENV)/python -m tests.chaos

schemas: .venv
	$(VENV)/payment-events schemas export

.venv: pyproject.toml constraints.txt
	scripts/bootstrap
