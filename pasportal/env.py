"""Typed readers for environment variables that fail loudly, naming the variable.

Kept free of Django so settings, management commands and scripts share them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


class ConfigError(RuntimeError):
    """An environment variable is missing or malformed; the message names it."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(
    name: str, default: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """Return the variable as text; raise ConfigError when missing without default."""
    source = os.environ if env is None else env
    value = source.get(name)
    if value is None:
        if default is None:
            raise ConfigError(f"{name} must be set")
        return default
    return value


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """Return the variable as a boolean; raise ConfigError on anything but yes/no words."""
    source = os.environ if env is None else env
    raw = source.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(
        f"{name} must be a boolean (1/0, true/false, yes/no), got {raw!r}"
    )


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Return the variable as an integer within bounds; raise ConfigError otherwise."""
    source = os.environ if env is None else env
    raw = source.get(name)
    if raw is None:
        value = default
    else:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def env_list(
    name: str, default: list[str], env: Mapping[str, str] | None = None
) -> list[str]:
    """Return a comma-separated variable as a list of non-empty stripped items."""
    source = os.environ if env is None else env
    raw = source.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(
    name: str,
    default: str,
    choices: tuple[str, ...],
    env: Mapping[str, str] | None = None,
) -> str:
    """Return the variable if it is one of ``choices``; raise ConfigError otherwise."""
    value = env_str(name, default, env)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_url(
    name: str, schemes: tuple[str, ...], env: Mapping[str, str] | None = None
) -> str | None:
    """Return a URL variable if set, checking its scheme; raise ConfigError otherwise.

    The message never repeats the URL itself: it may carry a password.
    """
    source = os.environ if env is None else env
    raw = source.get(name)
    if raw is None or raw.strip() == "":
        return None
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme not in schemes:
        raise ConfigError(
            f"{name} must be a URL starting with one of {', '.join(s + '://' for s in schemes)}"
        )
    return raw.strip()
