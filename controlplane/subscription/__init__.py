"""Subscription fan-out: the agents' view of the cluster (DESIGN.md §6).

One ClusterCache listener (`state.SubscriptionState`) turns every etcd revision into a delta,
serialized once (`framing`), kept in a time window (`history`) for resumes, and handed to the
`hub`, which appends its shared part once to a tail (`tail`) that every subscriber
(`subscriber`) takes at the next flush, and queues a node's own part for that node only.
Snapshots are built once per revision and shared (`snapshot`). Status goes to etcd (`status`):
one record per replica with every node it serves, and a node's final counters under its own
key after a clean disconnect, so every replica can show it and wait for convergence
(`waiter`).
"""
