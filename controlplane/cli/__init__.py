"""The `bulkhead` command line: the admin API and (later) the local agent API."""
