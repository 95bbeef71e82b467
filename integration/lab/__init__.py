"""`bulkhead-lab`: a cluster on one machine — nodes and pods as network namespaces."""
