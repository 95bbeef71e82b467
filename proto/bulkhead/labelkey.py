"""The one rule for a label key, wherever one is given: identity and endpoint labels
(`source:key=value`), the selectors of policies and services, lab manifests.

It is Kubernetes' qualified name, so manifests carry their keys unchanged: an optional prefix
(a DNS subdomain of at most 253 characters) and `/`, then a name of 1-63 letters, digits,
'-', '_' or '.' that begins and ends with a letter or digit (`app.kubernetes.io/name`). None
of these characters is special in a label string: `:` ends the source, `=` the key, `;`
separates labels in the etcd key of a label set.
"""

from __future__ import annotations

import re

MAX_KEY_LENGTH = 253 + 1 + 63
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
RULE = ("an optional DNS-subdomain prefix and '/' (e.g. app.kubernetes.io/), then a name of "
        "1-63 letters, digits, '-', '_' or '.' beginning and ending with a letter or digit")


def key_problem(key: str) -> str | None:
    """Why `key` is not a label key (a short reason naming the rule), or None."""
    prefix, slash, name = key.rpartition("/")
    if not name or len(name) > 63 or not _NAME.fullmatch(name):
        return f"key must be {RULE}"
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"key prefix must be a lowercase DNS subdomain of at most 253 characters ({RULE})"
    return None


def is_key(key: str) -> bool:
    return key_problem(key) is None
