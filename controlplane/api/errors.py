"""The control plane's servicer wrapper (shared with the agent: bulkhead.rpcerror)."""

from __future__ import annotations

from bulkhead.rpcerror import servicer_method

rpc = servicer_method("control plane")
