"""Helpers shared by the tests: models that misbehave on purpose, fixtures' building blocks.

The AWS fault proxy the fault suite uses is shared with the benchmarks and lives in ``bench/awsproxy``.
"""
