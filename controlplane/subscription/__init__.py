"""Subscription fan-out: the agents' view of the cluster (DESIGN.md §6).

One ClusterCache listener (`state.SubscriptionState`) turns every etcd revision into a delta,
serialized once (`framing`), kept in a time window (`history`) for resumes, and handed to the
`hub`, which queues it for every subscriber (`subscriber`). Snapshots are built once per
revision and shared (`snapshot`). Per-node status is published to etcd (`status`) so every
replica can show it and wait for convergence (`waiter`).
"""
