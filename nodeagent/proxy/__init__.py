"""The node's transparent HTTP proxy for L7 policy (a process of its own, started by the agent).

The tc programs hand it connections that an L7 policy entry redirects (``bpf_sk_assign`` to its
transparent listener); it checks every request against ``bulkhead.httprules`` for the
connection's (endpoint, direction, peer identity, port), forwards allowed ones to the original
destination from the client's own address and answers the others ``403 Access denied``.  The
agent drives it over a unix socket (``control``): rules and listener port in, flows and
counters out.
"""
