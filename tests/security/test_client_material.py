"""Where the CLI finds its credential now that TLS is the default (bulkhead.tls.client_material):
flags, environment, the state dir's admin credential or the one a lab points to; plaintext
only when asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkhead import tls


def _admin(directory: Path) -> tls.Credentials:
    directory.mkdir(parents=True)
    for name in (tls.CA_CERT, tls.ADMIN_CERT, tls.ADMIN_KEY):
        (directory / name).write_text("pem")
    return tls.Credentials(directory / tls.CA_CERT, directory / tls.ADMIN_CERT,
                           directory / tls.ADMIN_KEY)


def test_the_state_dirs_admin_credential_or_the_one_a_lab_points_to(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    for name in ("CA", "CERT", "KEY"):
        monkeypatch.delenv(f"BULKHEAD_TLS_{name}", raising=False)
    own = _admin(tmp_path / tls.TLS_DIR)
    assert tls.client_material(None, None, None, tmp_path) == own
    lab = _admin(tmp_path / "labs" / "x" / "controlplane" / tls.TLS_DIR)
    (tmp_path / tls.ADMIN_POINTER).write_text(f"{lab.cert.parent}\n")
    assert tls.client_material(None, None, None, tmp_path) == lab
    # A pointer to a directory that is gone falls back to the state dir's own.
    (tmp_path / tls.ADMIN_POINTER).write_text(f"{tmp_path / 'gone'}\n")
    assert tls.client_material(None, None, None, tmp_path) == own


def test_plaintext_only_when_asked_and_never_with_certificate_flags(tmp_path: Path) -> None:
    assert tls.client_material(None, None, None, tmp_path, insecure=True) is None
    with pytest.raises(ValueError, match="--insecure and --tls-ca/--tls-cert/--tls-key"):
        tls.client_material(tmp_path / "ca", None, None, tmp_path, insecure=True)
    with pytest.raises(ValueError, match=r"no client credential \(none in .*/tls\).*--insecure"):
        tls.client_material(None, None, None, tmp_path, env_prefix="P_NO_SUCH_")


def test_insecure_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in (("1", True), ("true", True), ("YES", True), ("0", False),
                            ("", False)):
        monkeypatch.setenv(tls.INSECURE_ENV, value)
        assert tls.insecure_from_env() is expected
