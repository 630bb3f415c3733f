#!/usr/bin/env python
"""Django's command-line utility for PAS Portal."""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run a management command, stopping with a clear message on bad configuration."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pasportal.settings")
    from django.core.management import execute_from_command_line

    from pasportal.env import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
