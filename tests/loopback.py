"""Helpers for tests that start servers on 127.0.0.1."""

from __future__ import annotations

import subprocess
import time
import urllib.request

__all__ = ["wait_http"]


def wait_http(url: str, timeout: float, proc: subprocess.Popen, poll: float = 0.5) -> None:
    """Return once ``url`` answers 200; fail if ``proc`` exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(poll)
    raise TimeoutError(url)
