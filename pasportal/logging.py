"""Logging filter that strips credentials from every log record."""

from __future__ import annotations

import logging
import re

# user:password@host in URLs, and key=value pairs in DSNs / ODBC strings.
_URL_PASSWORD = re.compile(
    r"(?P<prefix>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?=@)", re.I
)
_KV_PASSWORD = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api[_-]?key)\s*[=:]\s*)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^;,\s]+)",
    re.I,
)


def redact_text(text: str) -> str:
    """Return ``text`` with URL passwords and password-like key=value pairs masked."""
    text = _URL_PASSWORD.sub(lambda m: m.group("prefix") + "***", text)
    return _KV_PASSWORD.sub(lambda m: m.group("key") + "***", text)


class RedactSecretsFilter(logging.Filter):
    """Rewrite a record's rendered message with credentials masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True
