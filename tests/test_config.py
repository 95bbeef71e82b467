"""Control-plane flags: their defaults are the Config defaults."""

from __future__ import annotations

import dataclasses

from controlplane.config import Config, from_args


def test_no_flags_give_the_config_defaults() -> None:
    parsed, defaults = from_args([]), Config()
    for f in dataclasses.fields(Config):
        if f.name != "replica_id":   # random per process
            assert getattr(parsed, f.name) == getattr(defaults, f.name), f.name
