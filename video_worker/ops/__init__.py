"""Operator tools: the ``video-worker`` command and what it runs (dev stack, provisioning, dead letters)."""
