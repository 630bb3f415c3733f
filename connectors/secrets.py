"""Secret references for connector configs, and the redactors every error uses.

A secret in a connector config is never the secret itself but a reference:

- ``env:NAME``       the value of environment variable ``NAME``;
- ``file:/path``     the content of a file (trailing newline stripped), e.g. a
                     Docker/Kubernetes secret mount;
- ``fernet:<token>`` an inline value encrypted with Fernet; the keys come from
                     ``PAS_FERNET_KEYS`` (comma-separated, newest first) so keys
                     can be rotated with :func:`rewrap`.

References are resolved at connect time only (:func:`resolve`); the plaintext
lives in local variables of the connect call and in the process-wide redaction
set (:func:`remember`) so that :func:`scrub` can remove it from any text that
leaves a connector (exceptions, log records).

Framework-free: no Django import.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import AfterValidator, SecretStr

from migration.engine.errors import TerminalError

__all__ = [
    "REDACTED",
    "SecretError",
    "SecretRef",
    "encrypt",
    "forget",
    "is_reference",
    "redact",
    "redact_dsn",
    "remember",
    "resolve",
    "rewrap",
    "scrub",
    "validate_reference",
]

REDACTED = "***"
_PREFIXES = ("env:", "file:", "fernet:")
KEYS_ENV = "PAS_FERNET_KEYS"


class SecretError(TerminalError):
    """A secret reference cannot be resolved (the message never holds the value)."""


def is_reference(value: str) -> bool:
    """Return True when ``value`` is a secret reference (env:/file:/fernet:)."""
    return value.startswith(_PREFIXES)


def validate_reference(value: SecretStr | None) -> SecretStr | None:
    """Return ``value`` if it is a reference; raise ValueError (without echoing it)."""
    if value is None:
        return None
    raw = value.get_secret_value()
    if raw == "":
        return value
    if not is_reference(raw):
        # Never include the raw value: this message ends up in admin forms/logs.
        raise ValueError(
            "secret must be a reference: env:NAME, file:/path or fernet:<token>"
        )
    if raw.startswith("env:") and not re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", raw):
        raise ValueError("env: reference must name an environment variable")
    if raw.startswith("file:") and not raw[5:].startswith("/"):
        raise ValueError("file: reference must be an absolute path")
    return value


#: A config field that holds a secret reference; shows as ``**********`` in repr.
SecretRef = Annotated[SecretStr, AfterValidator(validate_reference)]


# --------------------------------------------------------------------------- keys


def _keys() -> list[bytes]:
    raw = os.environ.get(KEYS_ENV, "")
    keys = [k.strip().encode() for k in raw.split(",") if k.strip()]
    if not keys:
        raise SecretError(f"no Fernet key configured: set {KEYS_ENV}")
    return keys


def _multifernet() -> MultiFernet:
    try:
        return MultiFernet([Fernet(k) for k in _keys()])
    except ValueError as exc:  # malformed key; do not echo the key
        raise SecretError(f"{KEYS_ENV} holds a malformed Fernet key") from exc


def encrypt(plaintext: str) -> str:
    """Return ``fernet:<token>`` for ``plaintext`` under the newest key."""
    return "fernet:" + _multifernet().encrypt(plaintext.encode()).decode()


def rewrap(token: str) -> str:
    """Return the ``fernet:`` token re-encrypted under the newest key; raises SecretError."""
    bare = token[len("fernet:") :] if token.startswith("fernet:") else token
    try:
        return "fernet:" + _multifernet().rotate(bare.encode()).decode()
    except InvalidToken:
        raise SecretError("fernet token cannot be decrypted with any key") from None


# ----------------------------------------------------------------------- resolve

_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()


def remember(secret: str) -> None:
    """Add a resolved secret to the process-wide redaction set used by scrub()."""
    if secret and len(secret) >= 3:
        with _KNOWN_LOCK:
            _KNOWN.add(secret)


def forget(secret: str) -> None:
    """Remove a secret from the process-wide redaction set."""
    with _KNOWN_LOCK:
        _KNOWN.discard(secret)


def resolve(ref: SecretStr | str | None, *, what: str = "secret") -> str | None:
    """Return the plaintext of a reference; raises SecretError naming ``what`` only."""
    if ref is None:
        return None
    raw = ref.get_secret_value() if isinstance(ref, SecretStr) else ref
    if raw == "":
        return ""
    if raw.startswith("env:"):
        name = raw[4:]
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"{what}: environment variable {name} is not set")
    elif raw.startswith("file:"):
        path = Path(raw[5:])
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(
                f"{what}: cannot read secret file {path} ({exc.strerror})"
            ) from None
    elif raw.startswith("fernet:"):
        try:
            value = _multifernet().decrypt(raw[7:].encode()).decode()
        except InvalidToken:
            raise SecretError(
                f"{what}: fernet token cannot be decrypted with any key"
            ) from None
    else:
        raise SecretError(f"{what}: not a secret reference")
    remember(value)
    return value


# ------------------------------------------------------------------------ redact

# key=value pairs in ODBC/libpq/JDBC strings: PWD=..., password=..., pass:...
_KV = re.compile(
    r"(?i)\b(pwd|password|passwd|pass|secret|token|api[_-]?key|access[_-]?key)"
    r"([\"']?\s*[=:]\s*)"
    r"(\{(?:[^}]|\}\})*\}|'[^']*'|\"[^\"]*\"|[^;&\s,)]+)"
)
# scheme://user:pass@host
_URL_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.\-]*://[^:/@\s]*):([^@\s/]+)@")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every given secret (and remembered one) replaced."""
    with _KNOWN_LOCK:
        known = set(_KNOWN)
    for s in sorted({s for s in secrets if s} | known, key=len, reverse=True):
        if s in text:
            text = text.replace(s, REDACTED)
    return text


def redact_dsn(text: str) -> str:
    """Return ``text`` with password=/PWD=/user:pass@ parts of DSNs masked."""
    text = _KV.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _URL_USERINFO.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)


def scrub(text: Any, secrets: Iterable[str | None] = ()) -> str:
    """Return str(text) with known secrets and DSN credentials removed."""
    return redact_dsn(redact(str(text), secrets))
