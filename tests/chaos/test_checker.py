"""The fault suite's checker finds what it is there to find: histories built by hand, each
with one anomaly of a kind the real runs must never show (and one clean history)."""

from __future__ import annotations

from tests.chaos import checker
from tests.chaos.history import History, Op, Probe, Toggle

LABELS = "k8s:app=a,k8s:io.kubernetes.pod.namespace=default"


def ok(kind: str, key: str, start: float, value: int = 0) -> Op:
    return Op(kind, key, start, start + 0.1, "ok", value=value)


def test_a_clean_history_has_no_anomalies() -> None:
    h = History(ops=[ok("endpoint-create", f"e1|{LABELS}", 1, 300),
                     ok("endpoint-create", f"e2|{LABELS}", 2, 300),
                     ok("endpoint-delete", "e2", 3),
                     ok("identity-allocate", "k8s:chaos-set=1", 4, 301)],
                toggles=[Toggle(False, 0, 1), Toggle(True, 5, 6)],
                probes=[Probe("c", 2, 4, "timeout"), Probe("c", 7, 7.1, "ok")])
    assert checker.endpoints(h, {"e1"}) == []
    assert checker.identities(h, {300: tuple(LABELS.split(",")), 301: ("k8s:chaos-set=1",)}) \
        == []
    assert checker.policy(h, True) == []
    assert checker.probes(h, 0) == ([], 2, 0)


def test_a_lost_acknowledged_create_is_found() -> None:
    h = History(ops=[ok("endpoint-create", f"e1|{LABELS}", 1, 300)])
    assert "is gone" in checker.endpoints(h, set())[0]


def test_a_delete_that_found_nothing_after_an_acknowledged_create_is_found() -> None:
    h = History(ops=[ok("endpoint-create", f"e1|{LABELS}", 1, 300),
                     Op("endpoint-delete", "e1", 2, 2.1, "refused", "NOT_FOUND: no e1")])
    assert "a delete found nothing" in checker.endpoints(h, set())[0]


def test_an_acknowledged_delete_undone_or_a_refused_create_present_is_found() -> None:
    h = History(ops=[ok("endpoint-create", f"e1|{LABELS}", 1, 300), ok("endpoint-delete", "e1", 2),
                     Op("endpoint-create", f"e2|{LABELS}", 3, 3.1, "refused", "INVALID")])
    assert len(checker.endpoints(h, {"e1", "e2"})) == 2


def test_unknown_outcomes_allow_either() -> None:
    h = History(ops=[Op("endpoint-create", f"e1|{LABELS}", 1, 1.1, "unknown"),
                     ok("endpoint-create", f"e2|{LABELS}", 2, 300),
                     Op("endpoint-delete", "e2", 3, 3.1, "unknown")])
    assert checker.endpoints(h, set()) == checker.endpoints(h, {"e1", "e2"}) == []


def test_two_identities_for_one_label_set_or_one_for_two_are_found() -> None:
    h = History(ops=[ok("identity-allocate", "k8s:chaos-set=1", 1, 301),
                     ok("identity-allocate", "k8s:chaos-set=1", 2, 302),
                     ok("identity-allocate", "k8s:chaos-set=2", 3, 301)])
    found = checker.identities(h, {})
    assert any("several identities" in f for f in found)
    assert any("several label sets" in f for f in found)
    assert checker.identities(History(), {5: ("a",), 6: ("a",)})   # etcd holds two for one set


def test_a_wrong_verdict_outside_a_convergence_window_is_found() -> None:
    h = History(toggles=[Toggle(False, 0, 1), Toggle(True, 5, 6)],
                probes=[Probe("c", 2, 2.1, "ok"),          # allowed while denied: anomaly
                        Probe("c", 5.5, 5.6, "ok"),        # in the window: not checked
                        Probe("c", 7, 9, "timeout")])      # denied while allowed: anomaly
    found, checked, skipped = checker.probes(h, 0)
    assert (len(found), checked, skipped) == (2, 2, 1)


def test_the_policy_left_in_another_state_than_acknowledged_is_found() -> None:
    h = History(toggles=[Toggle(False, 0, 1), Toggle(True, 5, 6)])
    assert checker.policy(h, False)
