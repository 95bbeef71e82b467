"""The rule for a port name (a container port's `name`, a Service's named `targetPort`):
Kubernetes' IANA service name, so a name a manifest gives one side matches the other."""

from __future__ import annotations

import re

_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
RULE = ("an IANA service name: at most 15 lowercase letters, digits and '-', with a letter, "
        "not beginning or ending with '-', no '--'")


def is_port_name(name: str) -> bool:
    return (len(name) <= 15 and _PORT_NAME.fullmatch(name) is not None and "--" not in name
            and any(c.isalpha() for c in name))
