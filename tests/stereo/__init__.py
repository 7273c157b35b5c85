"""Tests of the stereo package (real clips generated with PyAV; no binary fixtures)."""
