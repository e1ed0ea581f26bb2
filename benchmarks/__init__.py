"""Benchmarks of pipecat-audio-capture: ``make bench`` runs them and writes ``RESULTS.md``.

Nothing here is a test and nothing asserts a time: every figure is a median with its spread
over repeated runs, and every comparison is measured side by side in the same run.
"""
