"""Hostile input, round three (issue 41): nothing private is served, one bad file costs one row, text stays text."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request

import pytest
from helpers import free_port
from PIL import Image


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow  # starts a server
def test_only_the_pictures_the_page_shows_are_served_never_a_model_folder(slot_models, tmp_path):
    """Issue 41.2: ``set_static_paths`` named the model folders, so ``/gradio_api/file=`` handed out all of them."""
    from gradio.data_classes import _StaticFiles

    from tumor_ai.app.ui import build_app
    from tumor_ai.core.inference import Predictor

    folder = tmp_path / "served-model"
    shutil.copytree(slot_models["cnn"], folder)
    (folder / ".env").write_text("HF_TOKEN=hf_not_a_real_token\n")
    Image.new("RGB", (64, 64), "white").save(folder / "confusion_matrix.png")
    before = len(_StaticFiles.all_paths)
    app = build_app({"cnn": Predictor.from_source(folder, precision="float32")})
    added = _StaticFiles.all_paths[before:]
    assert len(added) == 1 and added[0].is_dir()
    served = sorted(path.name for path in added[0].rglob("*"))
    # pictures, and the labelled batch example the page builds from them (a zip of those same pictures)
    assert served and all(name.endswith((".jpg", ".png")) or name == "labelled.zip" for name in served), served
    assert "model0-confusion_matrix.png" in served
    for static in _StaticFiles.all_paths:  # every app built in this process: none serves a model folder
        assert not folder.resolve().is_relative_to(static) and not static.is_relative_to(folder.resolve())
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        base = f"http://127.0.0.1:{port}/gradio_api/file="
        for private in (".env", "model.keras", "tumor_ai.json", "confusion_matrix.png"):
            assert _status(base + str(folder.resolve() / private)) in (403, 404), private
        assert _status(base + str(added[0] / "model0-confusion_matrix.png")) == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as response:
            assert str(folder.resolve()) not in response.read().decode()
    finally:
        app.close()


def test_the_pictures_folder_is_outside_the_sweep_and_goes_with_the_workspace(tmp_path, monkeypatch):
    from tumor_ai.app import workspace

    root = tmp_path / "tumor_ai_x"
    (root / workspace.SHOWN).mkdir(parents=True)
    monkeypatch.setattr(workspace, "_root", root)
    folder = workspace.pictures_folder()
    assert folder.parent == root / workspace.SHOWN
    assert not folder.is_relative_to(root / "gradio") and not folder.is_relative_to(root / "tmp")


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


@pytest.mark.slow  # starts a server
def test_every_published_tool_has_a_whole_schema_and_answers_over_mcp(slot_predictors, example_paths):
    """Issue 41.9: summarise_batch's schema named a definition that was not there, and no MCP test called it."""
    import asyncio
    import base64

    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    from tumor_ai.app.tool_endpoints import TOOL_NAMES
    from tumor_ai.app.ui import build_app

    app = build_app(slot_predictors)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, mcp_server=True)
    image = "data:image/jpeg;base64," + base64.b64encode(example_paths["glioma"].read_bytes()).decode()
    calls = {
        "classify_slice": {"image": image, "model": "cnn"},
        "compare_models": {"image": image},
        "explain_class": {"image": image, "label": "pituitary", "model": "vgg16"},
        "summarise_batch": {"file1": image, "file2": image},
        "model_figures": {"model": "cnn"},
        "explain_grad_cam": {},
    }
    assert set(calls) == set(TOOL_NAMES)

    async def work():
        url = f"http://127.0.0.1:{port}/gradio_api/mcp/"
        async with streamablehttp_client(url) as (read, write, _), ClientSession(read, write) as session:
            await session.initialize()
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            results = {name: await session.call_tool(name, arguments) for name, arguments in calls.items()}
            return tools, results

    try:
        tools, results = asyncio.run(work())
    finally:
        app.close()
    assert set(tools) == set(TOOL_NAMES)
    for name, tool in tools.items():
        defined = set(tool.inputSchema.get("$defs") or {})
        assert all(ref.removeprefix("#/$defs/") in defined for ref in _refs(tool.inputSchema)), (name, tool.inputSchema)
    for name, result in results.items():
        text = " ".join(part.text for part in result.content if getattr(part, "text", None))
        assert not result.isError and "error" not in text.lower()[:40], (name, text)
    summary = " ".join(part.text for part in results["summarise_batch"].content if getattr(part, "text", None))
    assert summary.startswith("2 files · "), summary
