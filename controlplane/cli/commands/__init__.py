"""One module per noun; each registers its sub-commands on the parser."""

from . import endpoint, identity, ipcache, node, status

ALL = [status, identity, node, endpoint, ipcache]
