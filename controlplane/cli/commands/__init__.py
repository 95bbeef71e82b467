"""One module per noun; each registers its sub-commands on the parser."""

from . import agent, endpoint, identity, ipcache, node, observe, policy, policywait, status

# policywait last: it adds the `policy` noun only if no other module registered one.
ALL = [status, identity, node, endpoint, ipcache, observe, agent, policy, policywait]
