"""The one folder the app owns: every file it or Gradio writes goes there, and nothing outlives it.

Gradio's own cache sweep (``delete_cache``) removes the uploads and pictures it tracks, but the
upload parser's temporary files, the hash folders and anything written after the last sweep
would stay behind. So the app points Gradio (``GRADIO_TEMP_DIR``) and Python's ``tempfile`` at
a fresh folder, sweeps it on the schedule the About tab states, and deletes it at shutdown,
including on SIGTERM (how Spaces and containers stop an app). A ``kill -9`` or an out-of-memory
kill runs none of that, so each folder names its process (``owner``), and the next start-up
removes every folder whose process is gone.

The sweep skips a file that a running event still reads (``in_use``): a batch of 500 images can
take longer than the sweep's age, and its inputs must not vanish under it. While this sweeper runs,
Gradio's own ``delete_cache`` is off (``active_sweep``), since Gradio's knows nothing of that.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

CACHE_SWEEP = (300, 300)  # every 5 minutes, delete files older than 5 minutes
PREFIX = "tumor_ai_"
OWNER_FILE = "owner"  # "<pid> <process start time>" of the app that made the folder
UNOWNED_AGE = 24 * 3600  # a folder with no owner file (an older version) is left this long
log = logging.getLogger("tumor_ai.app.workspace")
_in_use: Counter[str] = Counter()  # real path -> events reading it now
_in_use_lock = threading.Lock()
_active: tuple[int, int] | None = None  # (every, age) of the running sweeper
_root: Path | None = None  # the open workspace, if any
SHOWN = "shown"  # the pictures the page shows: copies, never swept, gone with the workspace


def active_sweep() -> tuple[int, int] | None:
    """``(every, age)`` of this process's sweeper, or None when no workspace is open."""
    return _active


@contextlib.contextmanager
def in_use(paths: Iterable[str | Path]) -> Iterator[None]:
    """Keep ``paths`` from the sweep while the block runs (an event reading its inputs)."""
    keys = [os.path.realpath(path) for path in paths]
    with _in_use_lock:
        _in_use.update(keys)
    try:
        yield
    finally:
        with _in_use_lock:
            _in_use.subtract(keys)
            for key in keys:
                if _in_use[key] <= 0:
                    del _in_use[key]


def upload_path(payload) -> str | None:
    """Where an upload lies in the app's folder, from Gradio's file payload (a dict) or a plain path."""
    path = payload.get("path") if isinstance(payload, dict) else payload
    return str(path) if path and isinstance(path, str | os.PathLike) else None  # an API client's number or list: none


def is_in_use(path: str | Path) -> bool:
    """Whether a running event has marked ``path`` as read (``in_use``)."""
    with _in_use_lock:
        return os.path.realpath(path) in _in_use


def process_identity(pid: int) -> str:
    """``"<pid> <start time>"``: the start time (from /proc where there is one) tells a reused pid apart."""
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{pid} {start}"


def owner_alive(identity: str) -> bool:
    """Whether the process that wrote ``identity`` still runs (the same process, not a reused pid)."""
    try:
        pid = int(identity.split()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # someone else's live process
    return identity.split()[1:] in (["?"], process_identity(pid).split()[1:])


def remove_stale_workspaces(parent: Path) -> int:
    """Delete the folders of earlier runs whose process is gone (killed without a clean-up); returns how many."""
    removed = 0
    for folder in Path(parent).glob(f"{PREFIX}*"):
        owner = folder / OWNER_FILE
        try:
            if owner.exists():
                stale = not owner_alive(owner.read_text())
            else:
                stale = folder.is_dir() and time.time() - folder.stat().st_mtime > UNOWNED_AGE
        except OSError:
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def sweep(root: Path, age: float) -> int:
    """Delete files under ``root`` older than ``age`` seconds, then empty folders; returns files deleted."""
    deleted, now = 0, time.time()
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        try:
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
            elif now - path.lstat().st_ctime > age and not is_in_use(path):
                path.unlink()
                deleted += 1
        except OSError:
            continue  # in use or already gone: the next sweep takes it
    return deleted


def open_workspace(every: float, age: float) -> Path:
    """Create the app's folder, route temporary files into it, sweep it every ``every`` seconds, remove it at exit."""
    global _active, _root
    removed = remove_stale_workspaces(Path(tempfile.gettempdir()))
    if removed:
        log.info("removed %d folder(s) left by earlier runs that were killed", removed)
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    (root / OWNER_FILE).write_text(process_identity(os.getpid()))
    (root / "gradio").mkdir()
    (root / "tmp").mkdir()
    (root / SHOWN).mkdir()
    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    os.environ["TMPDIR"] = str(root / "tmp")
    tempfile.tempdir = str(root / "tmp")

    def sweeper() -> None:
        while root.exists():
            time.sleep(every)
            deleted = sweep(root / "gradio", age) + sweep(root / "tmp", age)
            if deleted:
                log.info("swept %d file(s) older than %.0f s", deleted, age)

    threading.Thread(target=sweeper, name="tumor-ai-sweeper", daemon=True).start()
    _active, _root = (int(every), int(age)), root
    atexit.register(close_workspace, root)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame) -> None:
        close_workspace(root)
        if callable(previous):
            previous(signum, frame)
        raise SystemExit(0)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)
    log.info("temporary files go to the app's own folder, swept every %.0f s (files older than %.0f s)", every, age)
    return root


def close_workspace(root: Path) -> None:
    """Remove the app's folder and everything in it."""
    global _active, _root
    _active, _root = None, None
    shutil.rmtree(root, ignore_errors=True)


def pictures_folder() -> Path:
    """A fresh folder of its own for copies of the pictures the page shows, the only folder the app serves as static.

    In the app's workspace it sits beside (not inside) the swept folders and goes with the workspace; without one
    (an app built in a test or a notebook) it is a temporary folder removed at exit.
    """
    if _root is not None and (_root / SHOWN).is_dir():
        return Path(tempfile.mkdtemp(prefix="pictures_", dir=_root / SHOWN))
    folder = Path(tempfile.mkdtemp(prefix="tumor-ai-shown-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder
