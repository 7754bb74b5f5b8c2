"""Tools for driving real gateway and sandbox processes (kill tests, soak runs, benchmarks)."""
