"""Debian's headless Chromium for the browser tests (dashboard, offline /docs)."""

from __future__ import annotations

import os
import shutil

import pytest


def chromium() -> str:
    """The chromium binary; skips the test where it is missing, fails it under CI (where
    .ci/run installs it)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium; CI installs it)")
    return path
