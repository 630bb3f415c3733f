"""Test-only knobs on top of the real settings module.

The control plane under test is the real PostgreSQL on loopback (as in
production) unless DATABASE_URL says otherwise; each pytest process gets its own
test database name so concurrent runs on one machine do not collide.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("PAS_ENV", "test")
os.environ.setdefault("PAS_VAR_DIR", tempfile.mkdtemp(prefix="pas-test-var-"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/pasportal")

from pasportal.settings import *  # noqa: F403
from pasportal.settings import DATABASES, Q_CLUSTER

if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"]["TEST"] = {"NAME": f"test_pasportal_{os.getpid()}"}

# Tasks run inline in tests unless a test starts a real cluster itself.
Q_CLUSTER["sync"] = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
