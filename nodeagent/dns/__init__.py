"""Cluster DNS served by the agent for the pods of its node (see answer.py and server.py)."""
