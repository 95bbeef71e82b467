"""Nodes: registration, node ids and pod CIDRs, tunnel endpoints, the per-node lease."""
