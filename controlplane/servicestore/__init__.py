"""Services in etcd: apply, list, get, delete; ClusterIPs and frontend ids claimed without
locks (create-only compares)."""
