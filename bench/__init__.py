"""Benchmarks of the video worker against the plain loop of the original design (issue #6).

``python -m bench.run [--quick]`` runs every workload and writes ``BENCHMARKS.md``.
"""
