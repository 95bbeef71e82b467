"""The fault suite: the real system under continuous work while faults are injected, with a
recorded history checked afterwards (in the spirit of etcd's robustness tests and Jepsen).

`python -m tests.chaos` (`make chaos`) runs it for CHAOS_SECONDS; `tests/chaos/test_chaos.py`
runs a short bounded version in `make test`; `--soak` (`make soak`) runs steady churn without
faults and samples memory.
"""
