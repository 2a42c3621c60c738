"""The app as a process and its About tab (slow: they start `python app.py` or run every tab)."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from gradio_client import Client, handle_file
from helpers import free_port, wait_for_http

pytestmark = pytest.mark.slow


def test_what_the_about_tab_promises_holds(slot_predictors, example_paths):
    """Uploads and drawn pictures leave the cache on the sweep, session state expires, all as the About tab says."""
    import time

    from gradio.utils import get_upload_folder

    from tumor_ai.app.ui import build_app, privacy_text

    # Files older than 20 s go at a sweep every second: long enough for the answer's pictures to be downloaded on a
    # loaded machine, short enough to wait for.
    app = build_app(slot_predictors, cache_sweep=(1, 20), session_seconds=20)
    promise = privacy_text((1, 20), 20)
    assert "within 21 seconds" in promise and "20 seconds after your last action" in promise
    assert any(promise in str(component.get("props", {}).get("value")) for component in app.config["components"])
    app.queue()
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        unique = example_paths["glioma"].read_bytes() + b"privacy-test"  # bytes no other test uploads
        upload = Path(get_upload_folder()).parent / "privacy_probe.jpg"
        upload.write_bytes(unique)
        client.predict(handle_file(str(upload)), "cnn", 0.5, "top", api_name="/predict")
        kept = [path for path in Path(get_upload_folder()).rglob("privacy_probe.jpg")]
        states = [data for session in app.state_holder.session_data.values() for data in session.state_data.values()]
        assert kept and any(value is not None for value in states), "the upload and the session's slice are there at first"

        def states():
            return [data for session in app.state_holder.session_data.values() for data in session.state_data.values()]

        deadline = time.monotonic() + 90  # the promise is 21 s; a loaded machine may take longer to sweep
        while time.monotonic() < deadline and (any(path.exists() for path in kept) or any(v is not None for v in states())):
            time.sleep(1)
        assert not any(path.exists() for path in kept), "the sweep deletes the upload"
        assert all(value is None for value in states()), "session state expires"
        # The examples are served from copies in a folder of their own, so the sweep that took the upload leaves them.
        examples = re.findall(r'"path": "([^"]*glioma\.jpg)"', json.dumps(app.config, default=str))
        assert examples and not any(Path(example).is_relative_to(get_upload_folder()) for example in examples)
        assert all(Path(example).read_bytes() == example_paths["glioma"].read_bytes() for example in examples)
        assert httpx.get(f"http://127.0.0.1:{port}/gradio_api/file={examples[0]}").status_code == 200
        upload.unlink()
    finally:
        app.close()


def test_a_session_leaves_no_file_behind_and_no_file_name_in_the_log(slot_models, example_paths, tmp_path):
    """`python app.py` with the system temp folder pointed at an empty one: after SIGTERM it is empty again."""
    import os
    import signal
    import subprocess
    import sys

    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(system_tmp), "HF_HUB_OFFLINE": "1"}
    env.pop("GRADIO_TEMP_DIR", None)
    port = free_port()
    log_path = tmp_path / "app.log"
    command = [
        sys.executable,
        "app.py",
        "--port",
        str(port),
        "--cnn",
        str(slot_models["cnn"]),
        "--vgg16",
        str(slot_models["vgg16"]),
        "--allow-no-mri-check",  # the small synthetic models have none
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", process, timeout=120, log=log_path)
        # The page comes before TensorFlow: on a loaded machine its import can hold the server for seconds at a time.
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, httpx_kwargs={"timeout": 120})
        secret = tmp_path / "secret-patient-name.png"
        secret.write_text("not an image")
        archive = tmp_path / "secret-archive.zip"
        with zipfile.ZipFile(archive, "w") as handle:
            handle.writestr("secret-member.jpg", b"broken")
            handle.write(example_paths["glioma"], "good.jpg")
        client.predict(handle_file(str(example_paths["glioma"])), "cnn", 0.5, "top", api_name="/predict")
        with pytest.raises(Exception, match="text file"):
            client.predict(handle_file(str(secret)), "cnn", 0.5, "top", api_name="/predict")
        summary, *_ = client.predict([handle_file(str(archive))], 0.5, api_name="/batch")
        assert summary.startswith("2 files · 1 refused")
        written = [path for path in system_tmp.rglob("*") if path.is_file()]
        assert written and all(path.is_relative_to(next(system_tmp.glob("tumor_ai_*"))) for path in written)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert list(system_tmp.rglob("*")) == [], "the app's folder is removed at SIGTERM"
    text = log_path.read_text()
    assert "refused an upload: ImageError" in text
    assert "secret" not in text, "file names never reach the log"
