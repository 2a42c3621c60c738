"""The tools over MCP and gradio_client, against the real app (`python app.py --mcp`) on the shipped models.

The client is the official ``mcp`` Python package over streamable HTTP, as Claude Desktop, Cursor
or smolagents would connect: list the tools, then classify, compare and explain an example slice.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port, wait_for_http

from tumor_ai.app.tool_endpoints import TOOL_NAMES

pytestmark = pytest.mark.slow  # it starts a server, a browser, a Hub or a build, trains, or runs the shipped models

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mcp_app(tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("mcp") / "app.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio"))}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), "--mcp"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, process, log=log_path)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def data_url(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


async def _session(url: str, work):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(url + "gradio_api/mcp/") as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        return await work(session)


def run(url: str, work):
    return asyncio.run(_session(url, work))


def test_the_tools_are_listed_with_their_schemas_and_nothing_else(mcp_app):
    tools = run(mcp_app, lambda session: session.list_tools())
    listed = {tool.name: tool for tool in tools.tools}
    assert set(listed) == set(TOOL_NAMES), "the page's own events (predict, compare, batch) are not MCP tools"
    classify = listed["classify_slice"]
    assert "brain MRI slice" in classify.description and "never a diagnosis" in classify.description
    assert set(classify.inputSchema["properties"]) == {"image", "model"}
    assert "one of" in classify.inputSchema["properties"]["model"]["description"]
    assert set(listed["explain_class"].inputSchema["properties"]) == {"image", "label", "model"}


def test_an_agent_classifies_compares_and_explains_an_example(mcp_app, example_paths):
    image = data_url(example_paths["meningioma"])

    async def work(session):
        return (
            await session.call_tool("classify_slice", {"image": image, "model": "cnn"}),
            await session.call_tool("compare_models", {"image": image}),
            await session.call_tool("explain_class", {"image": image, "label": "pituitary", "model": "vgg16"}),
            await session.call_tool("model_figures", {"model": "vgg16", "label": "meningioma"}),
        )

    classified, compared, explained, figures = run(mcp_app, work)
    for result in (classified, compared, explained):
        kinds = [content.type for content in result.content]
        assert not result.isError and kinds[0] == "text" and "image" in kinds, kinds
        assert "research and teaching tool" in result.content[0].text
    assert "The cnn model reads this slice as **Meningioma**" in classified.content[0].text
    assert "**cnn**" in compared.content[0].text and "**vgg16**" in compared.content[0].text
    assert "gives **Pituitary tumour** a probability of" in explained.content[0].text
    shipped = json.loads((Path(__file__).parent.parent / "models" / "vgg16" / "tumor_ai.json").read_text())
    assert f"accuracy {shipped['metrics']['validation']['accuracy']:.1%}" in figures.content[0].text  # its own figure


def test_a_bad_file_from_an_agent_is_one_sentence(mcp_app):
    bad = "data:image/jpeg;base64," + base64.b64encode(b"this is not a picture").decode()
    result = run(mcp_app, lambda session: session.call_tool("classify_slice", {"image": bad, "model": "cnn"}))
    assert result.isError and "Traceback" not in result.content[0].text


def test_gradio_client_calls_the_same_tools(mcp_app, example_paths):
    from gradio_client import Client, handle_file

    client = Client(mcp_app, verbose=False)
    text, overlay = client.predict(handle_file(str(example_paths["glioma"])), "vgg16", api_name="/classify_slice")
    assert "The vgg16 model reads this slice as" in text and Path(overlay).stat().st_size > 1000
    assert "Grad-CAM" in client.predict(api_name="/explain_grad_cam")
