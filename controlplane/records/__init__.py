"""The records the control plane keeps in etcd: `codec` owns each kind's dataclass and JSON
shape (encode, decode, the table the cluster cache checks values with); `messages` builds the
`bulkhead.v1` message of each, for the admin API and the agents' subscription alike."""
