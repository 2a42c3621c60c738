"""The app on a free loopback port, each named endpoint through gradio_client."""

from __future__ import annotations

import csv
import socket
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

ROOT_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tiny_predictors):
    from tumor_ai.ui import build_app

    app = build_app(tiny_predictors, cache_examples=True)
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
        handle_file(str(example_paths["glioma"])), "cnn", 0.5, api_name="/predict"
    )
    assert details["model"] == "cnn" and details["is_brain_mri"] is True
    assert abs(sum(details["probabilities"].values()) - 1) < 1e-3
    assert label["label"] and len(label["confidences"]) == 4
    assert overlay and heatmap and "not a medical device" in text


def test_compare_endpoint(client, example_paths):
    outputs = client.predict(handle_file(str(example_paths["pituitary"])), 0.4, api_name="/compare")
    label_a, overlay_a, label_b, overlay_b, summary = outputs
    assert label_a["label"] and label_b["label"] and overlay_a and overlay_b
    assert "agree" in summary and "| cnn |" in summary and "ms |" in summary


def test_batch_endpoint_with_zip_and_files(client, example_paths, tmp_path):
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(example_paths["notumor"], "notumor.jpg")
        handle.write(example_paths["meningioma"], "meningioma.jpg")
    table, gallery, csv_path = client.predict(
        [handle_file(str(example_paths["glioma"])), handle_file(str(archive))], 0.4, api_name="/batch"
    )
    assert table["headers"][:3] == ["file", "cnn class", "cnn confidence"]
    assert [row[0] for row in table["data"]] == ["glioma.jpg", "two.zip/notumor.jpg", "two.zip/meningioma.jpg"]
    assert len(gallery) == 6
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and rows[0]["agree"] in ("yes", "no")


def test_bad_upload_gets_a_message_and_the_app_keeps_serving(client, tmp_path, example_paths):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is a text file renamed to .jpg")
    with pytest.raises(Exception, match="it is a text file, not an image"):
        client.predict(handle_file(str(bad)), "cnn", 0.5, api_name="/predict")
    details = client.predict(handle_file(str(example_paths["notumor"])), "vgg16", 0.5, api_name="/predict")[-1]
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
    arguments = (handle_file(str(path)), "vgg16", 0.5) if endpoint == "/predict" else (handle_file(str(path)), 0.5)
    with pytest.raises(Exception, match=message):
        client.predict(*arguments, api_name=endpoint)


def test_batch_reports_bad_files_in_its_table(client, tmp_path, example_paths):
    bad = tmp_path / "notes.jpg"
    bad.write_text("plain text")
    table, _, _ = client.predict([handle_file(str(bad)), handle_file(str(example_paths["glioma"]))], 0.4, api_name="/batch")
    rows = {row[0]: row for row in table["data"]}
    assert rows["notes.jpg"][1] == "error" and "text file" in rows["notes.jpg"][-1]
    assert rows["glioma.jpg"][1] != "error"
