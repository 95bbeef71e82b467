from controlplane.identity.labels import LabelFilter, parse_labels


def test_canonical_form_is_sorted_deduplicated_and_filtered() -> None:
    labels, problems = parse_labels([
        "k8s:org=empire", "k8s:class=deathstar", "k8s:org=empire",
        "k8s:pod-template-hash=abc123", "k8s:io.kubernetes.pod.namespace=default",
        "k8s:io.kubernetes.container.name=web",
    ])
    assert problems == []
    assert labels.labels == ("k8s:class=deathstar", "k8s:io.kubernetes.pod.namespace=default",
                             "k8s:org=empire")


def test_filter_is_configurable() -> None:
    keep_hash = LabelFilter(ignore_keys=())
    labels, _ = parse_labels(["k8s:pod-template-hash=1", "k8s:a=b"], label_filter=keep_hash)
    assert "k8s:pod-template-hash=1" in labels.labels


def test_only_noise_is_rejected() -> None:
    _, problems = parse_labels(["k8s:pod-template-hash=1"])
    assert [p.field for p in problems] == ["labels"]


def test_reserved_labels_name_reserved_identities() -> None:
    labels, problems = parse_labels(["reserved:host"])
    assert problems == [] and labels.reserved_id() == 1
    _, problems = parse_labels(["reserved:host", "k8s:a=b"])
    assert problems and "reserved" in problems[0].description
    _, problems = parse_labels(["reserved:nosuch"])
    assert problems[0].field == "labels[0]"


def test_every_bad_label_is_reported_with_its_index() -> None:
    _, problems = parse_labels(["k8s:ok=1", "noequals", "k8s:a/b/c=d", "k8s:a;b=c", "k8s:a=\0"])
    assert [p.field for p in problems] == ["labels[1]", "labels[2]", "labels[3]", "labels[4]"]
