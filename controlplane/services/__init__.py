"""Kubernetes v1 Services: parsing and validating manifests (pure, no etcd), and the backends
derived from endpoints (`backends.py`, the revision pipeline's service stage)."""
