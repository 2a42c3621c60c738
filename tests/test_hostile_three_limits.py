"""Hostile input, round three (issue 41), the rest: a wrong type is one sentence, the Assistant's key is its own,
the tools live under the page's limits (queue, concurrency, cancellation, the batch's memory budget)."""

from __future__ import annotations

import json
import urllib.request

import gradio as gr
import pytest
from helpers import free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_a_wrong_type_for_the_opacity_is_one_sentence_in_the_handlers(slot_predictors, example_paths):
    """Issue 41.11, without a server: the handlers and the slider answer text for a number with one sentence."""
    from tumor_ai.app import handlers
    from tumor_ai.app.ui import _opacity

    path = str(example_paths["glioma"])
    for wrong in ("abc", [0.5], None, {"x": 1}, "nan", 7, True):
        with pytest.raises(gr.Error, match="overlay opacity must be a number from 0 to 1"):
            handlers.predict(slot_predictors, path, "cnn", wrong, "top", None)
        with pytest.raises(gr.Error, match="overlay opacity must be a number from 0 to 1"):
            handlers.compare(slot_predictors, path, wrong, None)
        with pytest.raises(gr.Error, match="overlay opacity must be a number from 0 to 1"):
            _opacity("x").preprocess(wrong)
    with pytest.raises(gr.Error, match="model must be given as text"):
        handlers.predict(slot_predictors, path, ["cnn"], 0.5, "top", None)
    assert handlers.opacity_value("0.3") == 0.3 and _opacity("x").preprocess(0.4) == 0.4
    assert handlers.predict(slot_predictors, path, "cnn", "0.5", "top", None).details["model"] == "cnn"


def _call(base: str, endpoint: str, data: list) -> tuple[str, object]:
    """One REST call as a plain HTTP client makes it: POST the data, read the event stream; (event, data) at the end."""
    request = urllib.request.Request(
        f"{base}gradio_api/call/{endpoint}", json.dumps({"data": data}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{base}gradio_api/call/{endpoint}/{event_id}", timeout=120) as response:
        lines = response.read().decode().splitlines()
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    payloads = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    return events[-1], json.loads(payloads[-1])


@pytest.mark.slow  # starts a server
def test_a_wrong_type_over_rest_is_one_sentence_not_a_null_error(slot_predictors, example_paths):
    """Issue 41.11: opacity "abc" to /predict gave ``{"error": null}`` and a traceback in the log."""
    from tumor_ai.app.ui import build_app

    app = build_app(slot_predictors)
    app.queue(default_concurrency_limit=1, max_size=8)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    base = f"http://127.0.0.1:{port}/"
    try:
        upload = urllib.request.Request(
            f"{base}gradio_api/upload",
            b'--b\r\nContent-Disposition: form-data; name="files"; filename="g.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            + example_paths["glioma"].read_bytes()
            + b"\r\n--b--\r\n",
            {"Content-Type": "multipart/form-data; boundary=b"},
        )
        with urllib.request.urlopen(upload, timeout=60) as response:
            image = {"path": json.loads(response.read())[0], "meta": {"_type": "gradio.FileData"}}
        cases = {
            "predict": [[image, "cnn", "abc", "top"], [image, "cnn", [1], "top"], [image, ["cnn"], 0.5, "top"]],
            "compare": [[image, "abc"], [image, {"a": 1}]],
            "batch": [[[image], "abc"], [[image], None]],
        }
        for endpoint, calls in cases.items():
            for data in calls:
                event, message = _call(base, endpoint, data)
                assert event == "error" and isinstance(message, dict), (endpoint, data, event, message)
                sentence = message["error"]  # was None: Gradio's answer to an exception it does not know
                assert sentence and sentence.startswith("The ") and ". " not in sentence, (endpoint, data, sentence)
        event, answer = _call(base, "predict", [image, "cnn", 0.5, "top"])  # and a right one still answers
        assert event == "complete" and any(isinstance(v, dict) and v.get("model") == "cnn" for v in answer), answer
    finally:
        app.close()


def test_hf_token_never_reaches_a_third_party_assistant_server(slot_predictors, example_paths, monkeypatch):
    """Issue 41.8: ``HF_TOKEN`` went to any ``--assistant-base-url``; the Assistant's key is its own."""
    import threading
    from http.server import ThreadingHTTPServer

    from test_assistant import ScriptedServer

    from tumor_ai.app.assistant import Conversation
    from tumor_ai.app.serve import assistant_brain, parse_args
    from tumor_ai.app.tools import Toolbox

    class Listening(ScriptedServer):
        headers_seen: list[dict] = []

        def do_POST(self):  # noqa: N802 (http.server's name)
            type(self).headers_seen.append({key.lower(): value for key, value in self.headers.items()})
            super().do_POST()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Listening)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_of_this_machine")
    monkeypatch.delenv("TUMOR_AI_ASSISTANT_API_KEY", raising=False)
    conversation = Conversation(slice_path=str(example_paths["glioma"]))
    try:
        for flags, expected in (([], None), (["--assistant-api-key", "key-of-that-server"], "Bearer key-of-that-server")):
            Listening.headers_seen, ScriptedServer.requests = [], []
            args = parse_args(["--assistant-model", "scripted-model", "--assistant-base-url", url, *flags])
            answer = assistant_brain(args).answer(Toolbox(slot_predictors), conversation, "Which model is surer here?")
            assert [call.name for call, _ in answer.calls] == ["compare_models"]
            assert len(Listening.headers_seen) == 2
            for headers in Listening.headers_seen:
                assert "hf_fake_token_of_this_machine" not in json.dumps(headers), headers
                assert headers.get("authorization") == expected, headers
    finally:
        server.shutdown()
    from tumor_ai.app.serve import assistant_key

    monkeypatch.setenv("TUMOR_AI_ASSISTANT_API_KEY", "key-from-the-environment")
    assert assistant_key(parse_args(["--assistant-model", "m", "--assistant-base-url", url])) == "key-from-the-environment"
    monkeypatch.delenv("TUMOR_AI_ASSISTANT_API_KEY")
    for base, key in (
        ([], "hf_fake_token_of_this_machine"),  # the HF Inference Providers
        (["--assistant-base-url", "https://router.huggingface.co/v1"], "hf_fake_token_of_this_machine"),
        (["--assistant-base-url", "http://router.huggingface.co/v1"], None),  # not over HTTPS
        (["--assistant-base-url", "https://huggingface.co.example.com/v1"], None),
        (["--assistant-base-url", "https://someone.hf.space/v1"], None),  # a Space runs anyone's code
    ):
        assert assistant_key(parse_args(["--assistant-model", "m", *base])) == key, base


def test_summarise_batch_holds_one_raw_file_and_the_tab_s_group_at_once(slot_predictors, example_paths, tmp_path, monkeypatch):
    """Issue 41.7: ``summarise_batch`` read sixteen raw files before decoding one (two calls took a server past 2 GB)."""
    import zipfile

    from tumor_ai.app import reader as reader_module
    from tumor_ai.app.tools import Toolbox
    from tumor_ai.core import batch

    archive = tmp_path / "twenty.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for index in range(20):
            handle.write(example_paths[("glioma", "notumor")[index % 2]], f"slice{index}.jpg")
    raw, held, groups = [0], [], []
    read_member, decode, run_batch = batch._read_member, batch.decode, batch.run_batch

    def counted_read(*args):
        raw[0] += 1
        held.append(raw[0])
        return read_member(*args)

    def counted_decode(name, source):
        item = decode(name, source)
        raw[0] -= isinstance(source, bytes)  # its raw bytes are done with once decoded
        return item

    def counted_run(predictors, items, batch_size=16, progress=None):
        groups.append(len(items))
        return run_batch(predictors, items, batch_size, progress)

    monkeypatch.setattr(batch, "_read_member", counted_read)
    monkeypatch.setattr(batch, "decode", counted_decode)
    monkeypatch.setattr(batch, "run_batch", counted_run)
    monkeypatch.setattr(reader_module, "run_batch", counted_run, raising=False)
    text = Toolbox(slot_predictors).summarise_batch([str(archive), str(example_paths["pituitary"])]).text
    assert text.startswith("21 files · 0 refused"), text
    assert len(held) == 20 and max(held) == 1, held  # one raw file at a time (was 16)
    assert groups and max(groups) <= reader_module.WEB_BATCH_SIZE == 8 and sum(groups) == 21, groups  # the tab's groups


def test_the_tools_run_under_the_page_s_queue_size_and_concurrency(slot_predictors):
    """Issue 41.6: eight tool calls were all taken where the page's queue refused the fifth (``--queue-size``)."""
    import threading
    import time

    from tumor_ai.app.tools import ToolError
    from tumor_ai.app.ui import MODEL_CONCURRENCY, build_app

    app = build_app(slot_predictors)
    app.queue(default_concurrency_limit=1, max_size=3)  # as tumor_ai.app.serve does, after the app is built
    page = {fn.api_name: fn for fn in app.fns.values() if fn.api_name in ("predict", "batch", "summarise_batch")}
    assert page["predict"].concurrency_limit == MODEL_CONCURRENCY and page["batch"].concurrency_limit == "default"
    gates = app.tool_gates
    with gates["predict"].turn():
        assert gates["predict"].limits == (MODEL_CONCURRENCY, 3)
    batch = gates["batch"]
    with batch.turn():
        assert batch.limits == (1, 3)  # the Batch tab's one at a time (the queue's default), and its queue size
        entered = []
        waiting = [threading.Thread(target=lambda: entered.append(batch.turn().__enter__()), daemon=True) for _ in range(3)]
        for thread in waiting:
            thread.start()
        deadline = time.monotonic() + 30
        while batch._inside < 4 and time.monotonic() < deadline:  # a state to reach, not a time to measure
            time.sleep(0.01)
        assert batch._inside == 4 and not entered  # one running, three waiting: the queue is full
        with pytest.raises(ToolError, match="busy: 3 requests are already waiting"), batch.turn():
            pass
    for thread in waiting:  # each waiting call takes its turn as the one before it lets go
        thread.join(timeout=0.1)


def test_a_batch_summary_stops_between_files_once_its_caller_is_gone(slot_predictors, example_paths, monkeypatch):
    """Issue 41.6: four summaries dropped by their clients kept the app busy for minutes; one checks between files."""
    from tumor_ai.app.tool_endpoints import caller_gone
    from tumor_ai.app.tools import Toolbox, ToolError
    from tumor_ai.core import batch
    from tumor_ai.core.wording import SUMMARY_STOPPED

    decoded = []
    decode = batch.decode
    monkeypatch.setattr(batch, "decode", lambda name, source: decoded.append(name) or decode(name, source))
    paths = [str(example_paths[label]) for label in ("glioma", "meningioma", "notumor", "pituitary")] * 3
    asked = []

    def gone_after_three() -> bool:
        asked.append(len(decoded))
        return len(decoded) >= 3

    with pytest.raises(ToolError, match=SUMMARY_STOPPED):
        Toolbox(slot_predictors).summarise_batch(paths, stop=gone_after_three)
    assert asked == [1, 2, 3] and len(decoded) == 3  # asked after every file; no file read after the caller went
    assert caller_gone(None)() is False
    decoded.clear()
    assert Toolbox(slot_predictors).summarise_batch(paths, stop=lambda: False).text.startswith("12 files")
    assert len(decoded) == 12
