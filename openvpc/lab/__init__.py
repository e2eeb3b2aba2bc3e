"""Labs: the in-memory fabric and simulator (and, later, real namespaces and processes)."""
