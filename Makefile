# Shortcuts; the README's two commands are bin/up and bin/test.
.PHONY: up test lint format bench cluster-status

up:
	bin/up

test:
	bin/test

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports --no-cache

format:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

bench:
	.venv/bin/python bench/checker_bench.py

cluster-status:
	.venv/bin/python -m workers.localkafka status
