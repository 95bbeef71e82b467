"""FQDN policy on the node: what the DNS proxy learnt (`cache`) and how `toFQDNs` entries
become entries for those addresses (`expand`)."""
