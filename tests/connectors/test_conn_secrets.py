"""Secret references, Fernet rotation, and the redactors."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from connectors.kinds import get_kind
from connectors.secrets import (
    SecretError,
    encrypt,
    redact,
    redact_dsn,
    resolve,
    rewrap,
    scrub,
)

CANARY = "CANARY-pw-7f3a9"


def test_env_and_file_references(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CX_SECRET_T1", CANARY)
    assert resolve("env:CX_SECRET_T1") == CANARY
    f = tmp_path / "pw"
    f.write_text(CANARY + "\n")
    assert resolve(f"file:{f}") == CANARY
    with pytest.raises(SecretError, match="CX_SECRET_MISSING") as exc:
        resolve("env:CX_SECRET_MISSING", what="db password")
    assert "db password" in str(exc.value)
    with pytest.raises(SecretError, match="cannot read"):
        resolve(f"file:{tmp_path / 'nope'}")


def test_fernet_rotation_and_rewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("PAS_FERNET_KEYS", old)
    token = encrypt(CANARY)
    assert token.startswith("fernet:") and CANARY not in token
    assert resolve(token) == CANARY
    # Rotate: the new key first, the old one still accepted for decryption.
    monkeypatch.setenv("PAS_FERNET_KEYS", f"{new},{old}")
    assert resolve(token) == CANARY
    wrapped = rewrap(token)
    assert wrapped != token
    # After re-wrapping, the old key can be retired.
    monkeypatch.setenv("PAS_FERNET_KEYS", new)
    assert resolve(wrapped) == CANARY
    with pytest.raises(SecretError, match="cannot be decrypted"):
        resolve(token)
    with pytest.raises(SecretError, match="cannot be decrypted"):
        rewrap(token)
    monkeypatch.delenv("PAS_FERNET_KEYS")
    with pytest.raises(SecretError, match="PAS_FERNET_KEYS"):
        resolve(wrapped)


def test_config_refuses_plain_secrets_without_echoing_them() -> None:
    spec = get_kind("postgresql")
    with pytest.raises(ValidationError) as exc:
        spec.validate({"dbname": "x", "user": "u", "password": CANARY})
    assert CANARY not in str(exc.value) and CANARY not in repr(exc.value)
    with pytest.raises(ValidationError) as exc:
        get_kind("odbc").validate({"driver": "SQLite3", "options": {"PWD": CANARY}})
    assert CANARY not in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        get_kind("jdbc").validate(
            {
                "driver_class": "x",
                "url": f"jdbc:x://h/db?password={CANARY}",
                "jars": ["a"],
            }
        )
    assert CANARY not in str(exc.value)


def test_config_repr_hides_references() -> None:
    cfg = get_kind("postgresql").validate(
        {"dbname": "x", "user": "u", "password": f"fernet:{CANARY}"}
    )
    assert CANARY not in repr(cfg) and CANARY not in str(cfg)
    src = get_kind("postgresql").open(cfg, name="n")
    assert CANARY not in repr(src)


@pytest.mark.parametrize(
    "text",
    [
        f"DRIVER={{PostgreSQL}};SERVER=h;UID=u;PWD={CANARY};",
        f"DRIVER={{PostgreSQL}};SERVER=h;UID=u;PWD={{{CANARY}}};Fetch=1",
        f"host=h user=u password={CANARY} dbname=d",
        f"postgresql://u:{CANARY}@h:5432/d",
        f"jdbc:postgresql://h/d?user=u&password={CANARY}&ssl=true",
        f"mysql://root:{CANARY}@127.0.0.1/x",
        f'{{"password": "{CANARY}"}}',
        f"Password = '{CANARY}'",
    ],
)
def test_dsn_redactor(text: str) -> None:
    out = redact_dsn(text)
    assert CANARY not in out
    assert "***" in out


def test_redact_known_secrets() -> None:
    assert redact(f"error near {CANARY}!", [CANARY]) == "error near ***!"
    assert CANARY not in scrub(ValueError(f"x {CANARY}"), [CANARY])
