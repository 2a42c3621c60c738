"""`python app.py --share` offline, as a person starts it: what it prints, and the page a shared link's preview reads.

Slow: it starts the command (on the tiny test models). The share service is made unreachable through a proxy that
refuses connections, so the test never reaches a network.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser

import pytest
from conftest import ROOT
from helpers import free_port, wait_for_http

pytestmark = pytest.mark.slow


class MetaTags(HTMLParser):
    """Every ``<meta>`` tag of a page, in order, as (key, content): the key is its ``property`` or ``name``."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "meta" and (values.get("property") or values.get("name")):
            self.tags.append((values.get("property") or values.get("name"), values.get("content") or ""))


@pytest.fixture(scope="module")
def served(slot_models, tmp_path_factory):
    """``app.py --share`` on the test models, offline: ``(url, console)``, the console read once it has started."""
    port, log = free_port(), tmp_path_factory.mktemp("serve") / "console.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "HTTPS_PROXY": "http://127.0.0.1:9"}
    env |= {"https_proxy": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    env.pop("SPACE_ID", None)
    command = [sys.executable, "app.py", "--port", str(port), "--share", "--allow-no-mri-check"]
    command += ["--cnn", str(slot_models["cnn"]), "--vgg16", str(slot_models["vgg16"])]
    with log.open("w") as console:
        process = subprocess.Popen(command, cwd=ROOT, stdout=console, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, process, log=log)
        deadline = time.time() + 60
        while "No public link" not in log.read_text() and process.poll() is None and time.time() < deadline:
            time.sleep(0.2)  # the start-up lines come once launch() has returned
        yield url, log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_share_offline_says_one_thing(served):
    _, console = served
    assert "No public link: Gradio's share service cannot be reached from here; the app still works at http://" in console
    assert "share=True" not in console and "launch()" not in console, "no advice that contradicts the sentence"
    assert re.search(r"Running on local URL:\s+http://127\.0\.0\.1:\d+", console)


def test_the_page_s_preview_tags_describe_tumor_ai(served):
    url, _ = served
    with urllib.request.urlopen(url, timeout=30) as answer:
        page = answer.read().decode()
    parser = MetaTags()
    parser.feed(page)
    tags = dict(reversed(parser.tags))  # the first of each key, as a link preview reads it
    keys = [key for key, _ in parser.tags]
    assert all(keys.count(key) == 1 for key in keys if key.startswith(("og:", "twitter:"))), "one tag of each"
    assert tags["og:title"] == tags["twitter:title"] == "tumor-ai: brain-tumour MRI classifier"
    assert tags["og:description"] == tags["twitter:description"]
    assert tags["og:description"].startswith("Sort a brain MRI slice into glioma") and "not a diagnosis" in tags["og:description"]
    assert "Gradio" not in page.split("</head>")[0].split("<script")[0], "nothing of Gradio's own card is left"
    assert tags["twitter:card"] == "summary_large_image" and tags["og:url"] == url
    assert tags["og:image"] == tags["twitter:image"] and tags["og:image"].startswith(url)
    with urllib.request.urlopen(tags["og:image"], timeout=30) as picture:
        assert picture.status == 200 and picture.headers["content-type"] == "image/png"
        from io import BytesIO

        from PIL import Image

        assert Image.open(BytesIO(picture.read())).size == (1200, 630)
