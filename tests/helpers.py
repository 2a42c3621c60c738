"""Small helpers the server-starting tests share: a free port, waiting for an HTTP answer, a local Hub (olah)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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


def git_commit(folder: Path) -> None:
    """Make ``folder`` a git repository with one commit on ``main``: the form olah mirrors a Hub repo from."""
    names = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env = {**os.environ, **names}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "publish"]):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, env=env)


def start_olah(base: Path) -> tuple[subprocess.Popen, str]:
    """olah on a free port, offline, serving the git mirrors under ``base/mirrors``: ``(process, endpoint)``."""
    port = free_port()
    config = base / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{base / "repos"}"\n'
        f'mirrors-path = ["{base / "mirrors"}"]\n[accessibility]\noffline = true\n'
    )
    olah = Path(sys.executable).with_name("olah-cli")
    process = subprocess.Popen([str(olah), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=base)
    return process, f"http://127.0.0.1:{port}"
