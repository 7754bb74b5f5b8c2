"""Test support shipped with the package: real gateway and sandbox processes for kill tests,
soak runs and benchmarks (:mod:`.processes`), and the pytest plugin for other projects'
suites (:mod:`.pytest_plugin`, over :mod:`.inprocess` and :mod:`.reactor_thread`)."""
