"""Control-plane flags: their defaults are the Config defaults."""

from __future__ import annotations

import dataclasses

import pytest

from controlplane.config import Config, from_args


def test_no_flags_give_the_config_defaults() -> None:
    parsed, defaults = from_args([]), Config()
    for f in dataclasses.fields(Config):
        if f.name != "replica_id":   # random per process
            assert getattr(parsed, f.name) == getattr(defaults, f.name), f.name


def test_cluster_name_must_be_a_dns_label() -> None:
    assert from_args(["--cluster-name", "prod-1"]).cluster_name == "prod-1"
    for bad in ("Prod", "-prod", "prod_1", "a" * 64, "a.b"):
        with pytest.raises(SystemExit):
            from_args(["--cluster-name", bad])


def test_etcd_compaction_retention_is_a_positive_duration() -> None:
    assert from_args(["--etcd-compaction-retention", "2h30m"]).etcd_compaction_retention \
        == "2h30m"
    for bad in ("", "0h", "1d", "60", "1h-"):
        with pytest.raises(SystemExit):
            from_args(["--etcd-compaction-retention", bad])
