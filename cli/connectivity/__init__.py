"""`bulkhead connectivity test`: scenarios, the runner that plays them against a cluster, and
its report."""
