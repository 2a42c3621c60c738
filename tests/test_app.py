"""The app on a free loopback port, each named endpoint through gradio_client."""

from __future__ import annotations

import csv
import socket
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
ROOT_EXAMPLES = ROOT / "tumor_ai" / "examples"


@pytest.fixture(scope="module")
def app_url(slot_predictors):
    from tumor_ai.app.ui import build_app

    app = build_app(slot_predictors)
    app.queue(default_concurrency_limit=1, max_size=8)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_api_lists_the_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/predict", "/compare", "/batch"} <= set(endpoints)


def test_predict_endpoint(client, example_paths):
    label, overlay, heatmap, text, details = client.predict(
        handle_file(str(example_paths["glioma"])), "cnn", 0.5, "top", api_name="/predict"
    )
    assert details["model"] == "cnn" and details["label"] in ("glioma", "meningioma", "notumor", "pituitary")
    # The synthetic models carry no not-an-MRI check, and the API says so rather than claiming an MRI.
    assert details["is_brain_mri"] is None and details["mri_check"].startswith("off")
    assert abs(sum(details["probabilities"].values()) - 1) < 1e-3
    assert label["label"] and len(label["confidences"]) == 4
    assert overlay and heatmap and "not a medical device" in text


def test_compare_endpoint(client, example_paths):
    outputs = client.predict(handle_file(str(example_paths["pituitary"])), 0.4, api_name="/compare")
    label_a, overlay_a, label_b, overlay_b, summary = outputs
    assert label_a["label"] and label_b["label"] and overlay_a and overlay_b
    assert summary.startswith("**Both models read") or summary.startswith("**The models disagree")
    assert "| cnn |" in summary and "ms |" in summary


def test_batch_endpoint_with_zip_and_files(client, example_paths, tmp_path):
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(example_paths["notumor"], "notumor.jpg")
        handle.write(example_paths["meningioma"], "meningioma.jpg")
    summary, table, gallery, csv_path = client.predict(
        [handle_file(str(example_paths["glioma"])), handle_file(str(archive))], 0.4, api_name="/batch"
    )
    assert summary.startswith("3 files · 0 refused")
    assert table["headers"] == ["file", "cnn", "vgg16", "agree", "note"]
    assert [row[0] for row in table["data"]] == ["glioma.jpg", "two.zip/notumor.jpg", "two.zip/meningioma.jpg"]
    assert len(gallery) == 6
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and rows[0]["agree"] in ("yes", "no")


def test_bad_upload_gets_a_message_and_the_app_keeps_serving(client, tmp_path, example_paths):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is a text file renamed to .jpg")
    with pytest.raises(Exception, match="it is a text file, not an image"):
        client.predict(handle_file(str(bad)), "cnn", 0.5, "top", api_name="/predict")
    details = client.predict(handle_file(str(example_paths["notumor"])), "vgg16", 0.5, "top", api_name="/predict")[-1]
    assert details["model"] == "vgg16"


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_UPLOADS = [
    ("notes.jpg", b"plain text, renamed", "it is a text file, not an image"),
    ("report.pdf.png", b"%PDF-1.7\n1 0 obj", "it is a PDF document"),
    ("truncated.jpg", (ROOT_EXAMPLES / "glioma.jpg").read_bytes()[:3000], "truncated or corrupt"),
    ("tiny.png", _png(10, 10), "at least 32x32"),
    ("bomb.png", _png(9000, 9000), "too many pixels"),
    ("strip.png", _png(2000, 50), "aspect ratio"),
]


@pytest.mark.parametrize("name,data,message", BAD_UPLOADS, ids=[row[0] for row in BAD_UPLOADS])
@pytest.mark.parametrize("endpoint", ["/predict", "/compare"])
def test_bad_uploads_get_their_message_on_every_endpoint(client, tmp_path, name, data, message, endpoint):
    path = tmp_path / name
    path.write_bytes(data)
    arguments = (handle_file(str(path)), "vgg16", 0.5, "top") if endpoint == "/predict" else (handle_file(str(path)), 0.5)
    with pytest.raises(Exception, match=message):
        client.predict(*arguments, api_name=endpoint)


def test_batch_reports_bad_files_in_its_table(client, tmp_path, example_paths):
    bad = tmp_path / "notes.jpg"
    bad.write_text("plain text")
    summary, table, _, _ = client.predict(
        [handle_file(str(bad)), handle_file(str(example_paths["glioma"]))], 0.4, api_name="/batch"
    )
    rows = {row[0]: row for row in table["data"]}
    assert rows["notes.jpg"][1] == "error" and "text file" in rows["notes.jpg"][-1]
    assert rows["glioma.jpg"][1] != "error" and "1 refused" in summary


def test_the_same_upload_works_again_with_another_model(client, example_paths):
    upload = handle_file(str(example_paths["meningioma"]))
    first = client.predict(upload, "cnn", 0.5, "top", api_name="/predict")[-1]
    second = client.predict(upload, "vgg16", 0.5, "top", api_name="/predict")[-1]
    third = client.predict(upload, "cnn", 0.8, "glioma", api_name="/predict")
    assert (first["model"], second["model"]) == ("cnn", "vgg16") and third[-1]["probabilities"] == first["probabilities"]


def test_a_batch_runs_again_after_files_are_added(client, example_paths):
    first = [handle_file(str(example_paths["glioma"])), handle_file(str(example_paths["notumor"]))]
    client.predict(first, 0.4, api_name="/batch")
    summary, table, _, _ = client.predict([*first, handle_file(str(example_paths["pituitary"]))], 0.4, api_name="/batch")
    assert summary.startswith("3 files · 0 refused") and all(row[1] != "error" for row in table["data"])


def test_two_clients_sending_the_same_bytes_at_once_are_both_answered(app_url, example_paths):
    from concurrent.futures import ThreadPoolExecutor

    def ask(_):
        client = Client(app_url, verbose=False)
        upload = handle_file(str(example_paths["glioma"]))
        return [client.predict(upload, "cnn", 0.5, "top", api_name="/predict")[-1] for _ in range(3)]

    with ThreadPoolExecutor(4) as pool:
        answers = [details for run in pool.map(ask, range(4)) for details in run]
    assert len(answers) == 12 and {details["label"] for details in answers} == {answers[0]["label"]}


@pytest.fixture(scope="module")
def three_predictors(slot_predictors, slot_models):
    """The two slot models and a third served from the cnn slot's folder under its own name and title.

    Loading a folder again is what serving a third model costs the app; the app must assume nothing about two.
    """
    from tumor_ai.core.inference import Predictor

    third = Predictor.from_source(slot_models["cnn"], precision="float32")
    third.metadata.title = "Third model"
    return {**slot_predictors, "third": third}


def test_three_models_get_a_column_each_in_compare_predict_and_batch(three_predictors, example_paths):
    from tumor_ai.app.ui import build_app

    names = list(three_predictors)
    app = build_app(three_predictors)
    labels = [props.get("label") for props in (component.get("props", {}) for component in app.config["components"])]
    assert "Third model (third): confidence" in labels, "each Compare column is titled from its model's metadata"
    app.queue()
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        *columns, summary = client.predict(handle_file(str(example_paths["glioma"])), 0.4, api_name="/compare")
        assert len(columns) == 6 and all(label["label"] for label in columns[0::2]) and all(columns[1::2])
        assert summary.startswith(("**All three", "**The models disagree")), summary
        assert all(f"| {name} |" in summary for name in names)
        details = client.predict(handle_file(str(example_paths["notumor"])), "third", 0.5, "top", api_name="/predict")[-1]
        assert details["model"] == "third"
        files = [handle_file(str(example_paths[label])) for label in ("glioma", "pituitary")]
        batch_summary, table, gallery, _ = client.predict(files, 0.4, api_name="/batch")
        assert table["headers"] == ["file", *names, "agree", "note"] and len(gallery) == 2 * 3
        assert all(f"{name}: " in batch_summary for name in names)
    finally:
        app.close()


def test_a_busy_port_is_one_sentence(tmp_path):
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    assert result.returncode != 0 and f"Port {port} on 127.0.0.1 is not free" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_api_page_describes_each_endpoint_in_a_sentence(slot_predictors):
    from tumor_ai.app.ui import build_app

    endpoints = build_app(slot_predictors).get_api_info()["named_endpoints"]
    for name in ("/predict", "/compare", "/batch"):
        description = endpoints[name]["description"]
        assert "partial(" not in description and "slice" in description and description.endswith(".")
