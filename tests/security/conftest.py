from tests.security.tlsfixtures import tls_replicas

__all__ = ["tls_replicas"]
