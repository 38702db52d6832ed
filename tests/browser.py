"""A real headless browser (Debian's chromium, which scripts/setup.sh installs) loading a file
and returning the document as its scripts left it (`--dump-dom`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

LOAD_TIMEOUT = 180.0  # a cold start of chromium on a loaded machine


def rendered_dom(path: Path, query: str = "", fragment: str = "") -> str:
    """The DOM of `path` after its scripts ran (URL `file://PATH?query#fragment`)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is missing: scripts/setup.sh installs it")
    url = (
        path.resolve().as_uri()
        + (f"?{query}" if query else "")
        + (f"#{fragment}" if fragment else "")
    )
    argv = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=LOAD_TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
