"""Operator tools: the demo, traces, table dumps, benchmarks and comparisons."""
