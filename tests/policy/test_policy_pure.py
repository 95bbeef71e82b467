"""The policy engine stays pure: importing every module of `controlplane.policy` loads nothing
of the etcd layer (`controlplane.store`) nor the etcd-facing policy store and resolver."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import importlib, pkgutil, sys
import controlplane.policy as policy
for module in pkgutil.iter_modules(policy.__path__):
    importlib.import_module(f"controlplane.policy.{module.name}")
print(" ".join(sorted(m for m in sys.modules
                      if m.startswith(("controlplane.store", "controlplane.policystore")))))
"""


def test_the_policy_engine_imports_nothing_from_the_etcd_layer() -> None:
    loaded = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True,
                            text=True).stdout.split()
    assert loaded == []
