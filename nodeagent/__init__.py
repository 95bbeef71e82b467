"""The Bulkhead node agent."""

import os

# pyroute2 forks a helper process to work inside another network namespace; gRPC's fork
# handlers crash such a child (SIGSEGV) while the agent's gRPC threads run.  Read by gRPC when
# it is first imported, which in the agent happens after this package is.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
