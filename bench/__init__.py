"""SyncAdmin's benchmarks (issue 6): `make bench` or `python bench/run.py`; see docs/performance.md."""
