"""The one error class the legacy PAS generator raises on purpose."""

from __future__ import annotations


class GeneratorError(Exception):
    """Bad arguments or an unusable target; the message names the problem.

    Messages never contain a password: connection failures are reported by
    host, port and database name only.
    """
