"""Connectivity tests: the control plane's relay of test-pod and probe calls to agents."""
