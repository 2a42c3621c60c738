"""Small helpers the server-starting tests share: a free port, and waiting for an HTTP answer."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process, timeout: float = 180, log: Path | None = None) -> None:
    """Until ``url`` answers; fails with the tail of ``log`` if the process dies or time runs out."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                tail = log.read_text()[-2000:] if log and log.exists() else ""
                raise RuntimeError(f"{url} did not answer (exit {process.poll()}): {tail}") from None
            time.sleep(0.3)
