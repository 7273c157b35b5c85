"""Benchmarks of the video worker against the plain loop of the original design (issue #6).

``python -m bench.run [--quick]`` runs every workload and writes ``BENCHMARKS.md``. The AWS proxy every
workload runs behind (latency, a request log, faults at named calls) is ``bench/awsproxy``; the fault suite
(``tests/faults``) uses it too. Nothing here imports the tests.
"""
