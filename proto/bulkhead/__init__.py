"""Bulkhead's shared package: the API (`bulkhead.v1`) and the few helpers both sides need.

The control plane and the node agent never import each other; they share only this package.
"""
