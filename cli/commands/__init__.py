"""One module per noun; each registers its sub-commands on the parser."""

from . import (
    agent,
    clustermesh,
    connectivity,
    endpoint,
    fqdn,
    identity,
    ipcache,
    node,
    observe,
    policy,
    service,
    status,
    ui,
)

# `policy wait` lives in policywait.py; the policy module adds it to its verbs.
ALL = [status, identity, node, endpoint, ipcache, observe, agent, policy, service, clustermesh,
       connectivity, fqdn, ui]
