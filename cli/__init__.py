"""The `bulkhead` command line: the control plane's admin API, and a node agent's local API
(`bulkhead agent ...`)."""
