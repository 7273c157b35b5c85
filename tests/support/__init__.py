"""Helpers shared by the tests: models that misbehave on purpose, AWS fault proxy, fixtures' building blocks."""
