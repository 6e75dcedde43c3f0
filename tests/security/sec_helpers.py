"""Constants shared by the security tests (imported by module name, as pytest's
rootdir-relative import puts this directory on sys.path)."""

from __future__ import annotations

USER = "alice"
PASSWORD = "correct horse battery staple"
CONFIDENTIAL = ("resource-server", "rs-secret-" + "x" * 32)
FAST_ARGON2 = {"password_time_cost": 1, "password_memory_kib": 8 * 1024}
SPA_ORIGIN = "http://spa.example"
