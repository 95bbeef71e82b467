"""etcd: the connection, the key layout, the embedded server and the watch-fed cluster cache."""
