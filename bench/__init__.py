"""Benchmark harness for openvpc; results are recorded next to the code in RESULTS.md."""
