"""Pods as network namespaces: what the lab and the agent's connectivity-test pods share
(the namespace, the pod's labels, its small HTTP/UDP server, and the processes that run in
it)."""
