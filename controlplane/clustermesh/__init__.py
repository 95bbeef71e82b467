"""Clustermesh: connecting clusters (`remote`, `connections`), following each remote cluster's
state into the local etcd (`syncer`, `mesh`) and reporting on it (`status`), split the way
Cilium's pkg/clustermesh and KVStoreMesh are."""
