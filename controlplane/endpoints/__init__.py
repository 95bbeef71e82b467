"""Endpoints (workloads) and the ipcache (IP -> identity, node, tunnel endpoint)."""
