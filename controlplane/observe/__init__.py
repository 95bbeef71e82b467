"""The flow relay: every agent's flows, enriched with pod names and labels, as one stream."""
