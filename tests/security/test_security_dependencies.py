"""Security-relevant dependencies are pinned past their known advisories, both in
pyproject.toml (what users get) and in the environment the tests run in.

Run ``pip-audit`` for the full, current picture (see SECURITY.md)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

# package -> (minimum safe version, advisory ids it is past)
ADVISORIES = {
    "cryptography": ("44.0.1", "CVE-2024-12797 / GHSA-79v4-65xg-pq4g (bundled OpenSSL)"),
    "pyjwt": ("2.10.1", "CVE-2024-53861 / GHSA-75c5-xw7c-p5pm (issuer partial match)"),
    "argon2-cffi": ("23.1", "no known advisory; 23.1 is the first with Type.ID defaults we use"),
    "requests": ("2.32.4", "CVE-2024-47081 / GHSA-9hjg-9r4m-mvj7 (.netrc credential leak)"),
    "authlib": ("1.6.5", "CVE-2025-59420, CVE-2025-61920, CVE-2025-62706"),
    "starlette": ("0.49.1", "CVE-2025-62727 / GHSA-7f5h-v6xp-fcq8 (Range header DoS)"),
    "redis": ("4.5.4", "CVE-2023-28858 / CVE-2023-28859 (async cancellation leaks)"),
    "h11": ("0.16.0", "CVE-2025-43859 / GHSA-vqfr-h8mv-ghfj (chunked-encoding smuggling)"),
    "urllib3": ("2.5.0", "CVE-2025-50181 / CVE-2025-50182 (redirect control)"),
}
# Declared minimums still to be raised (none today); a pending pin is an xfail.
PENDING_PINS: dict[str, str] = {}


def _declared_minimums() -> dict[str, Version]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found: dict[str, Version] = {}
    for group in data["project"]["optional-dependencies"].values():
        for spec in group:
            req = Requirement(spec)
            for s in req.specifier:
                if s.operator in (">=", "==", "~="):
                    name = req.name.lower()
                    found[name] = max(found.get(name, Version("0")), Version(s.version))
    return found


@pytest.mark.parametrize("package", sorted(ADVISORIES))
def test_declared_minimum_is_past_advisories(package: str) -> None:
    minimum, advisory = ADVISORIES[package]
    declared = _declared_minimums()
    assert package in declared, f"{package} is not pinned in pyproject.toml"
    if package in PENDING_PINS and declared[package] < Version(minimum):
        pytest.xfail(PENDING_PINS[package])
    assert declared[package] >= Version(minimum), f"{package}: {advisory}"


@pytest.mark.parametrize("package", sorted(ADVISORIES))
def test_installed_version_is_past_advisories(package: str) -> None:
    minimum, advisory = ADVISORIES[package]
    try:
        installed = version(package)
    except PackageNotFoundError:
        pytest.skip(f"{package} is not installed")
    assert Version(installed) >= Version(minimum), f"{package} {installed}: {advisory}"


def test_pip_audit_is_documented() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    assert re.search(r"^pip(-audit| install pip-audit)", text, re.M)
    assert "pip-audit" in text
