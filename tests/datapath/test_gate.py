"""The datapath gate: skip without BPF, but FAIL under BULKHEAD_REQUIRE_DATAPATH=1."""

from __future__ import annotations

import pytest

from tests.datapath import conftest


def test_gate_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "datapath_missing", lambda: "no BPF here")
    monkeypatch.setenv("BULKHEAD_REQUIRE_DATAPATH", "1")
    with pytest.raises(pytest.fail.Exception, match="no BPF here"):
        conftest.require_datapath()
    monkeypatch.delenv("BULKHEAD_REQUIRE_DATAPATH")
    with pytest.raises(pytest.skip.Exception):
        conftest.require_datapath()
