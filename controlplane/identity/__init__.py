"""Security identities: label sets, their cluster-wide numbers, references and collection."""
