"""The Assistant: the keyword router, the chat's messages, and the language-model path.

The language-model path is the real ``huggingface_hub.InferenceClient`` code pointed at a local
OpenAI-compatible server on loopback that answers with scripted tool calls; no hosted model is
reached. The models are the two tiny untrained CNNs of ``conftest.slot_models``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import write_hostile_mr_dicom

from tumor_ai.app.assistant import ADVICE_REFUSAL, HELP, NEEDS_SLICE, Conversation, LanguageModel, Router, ToolCall, tool_schemas
from tumor_ai.app.chat import respond
from tumor_ai.app.tools import ToolResult
from tumor_ai.core.imaging import read_image
from tumor_ai.core.safe_text import markdown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [ToolCall("compare_models")]),
        ("Which model is surer?", [ToolCall("compare_models")]),
        ("what does the cnn read?", [ToolCall("classify_slice", {"model": "cnn"})]),
        (
            "Show the evidence for meningioma",
            [
                ToolCall("explain_class", {"label": "meningioma", "model": "cnn"}),
                ToolCall("explain_class", {"label": "meningioma", "model": "vgg16"}),
            ],
        ),
        ("where does the vgg16 see no tumour?", [ToolCall("explain_class", {"label": "notumor", "model": "vgg16"})]),
        ("How accurate is the vgg16 on meningiomas?", [ToolCall("model_figures", {"model": "vgg16", "label": "meningioma"})]),
        ("What does Grad-CAM show?", [ToolCall("explain_grad_cam")]),
    ],
)
def test_the_router_maps_questions_to_tools(toolbox, with_slice, text, expected):
    assert Router.plan(toolbox, with_slice, text.lower()) == expected


def test_the_router_says_what_it_can_do_and_what_it_needs(toolbox, with_slice):
    """Issue 39: a greeting is answered as one, with or without a slice; off-topic text says what the router can do."""
    from tumor_ai.core import wording

    assert Router.plan(toolbox, Conversation(), "which model is surer?") == NEEDS_SLICE
    assert Router.plan(toolbox, Conversation(), "hello there") == wording.greeting(False)
    assert Router.plan(toolbox, with_slice, "hello there") == wording.greeting(True)
    assert Router.plan(toolbox, Conversation(), "tell me a joke") == HELP
    assert Router.plan(toolbox, with_slice, "tell me a joke") == wording.not_understood(True)
    assert "Drop" not in wording.greeting(True) + wording.not_understood(True)  # the slice is there already


@pytest.mark.parametrize(
    "question",
    [
        "Should I have surgery?",
        "Does my mother have a tumour?",
        "What treatment does this need?",
        "Is it cancer?",
        "Do I have glioma",
    ],
)
def test_medical_advice_gets_one_sentence_and_no_tool(toolbox, with_slice, question):
    answer = Router().answer(toolbox, with_slice, question)
    assert answer.calls == [] and answer.reply == ADVICE_REFUSAL
    assert ADVICE_REFUSAL.count(".") == 1 and ADVICE_REFUSAL.endswith(".")


def test_answers_about_a_slice_come_from_the_tools_and_keep_the_disclaimer(toolbox, with_slice):
    """Issue 39 changed the reply: one sentence that answers, the short disclaimer once; the tool box holds the rest."""
    from tumor_ai import NOT_A_DIAGNOSIS

    answer = Router().answer(toolbox, with_slice, "compare the models")
    [(call, result)] = answer.calls
    assert call.name == "compare_models" and isinstance(result, ToolResult)
    assert len(result.pictures) == 2 and "never use it to make clinical decisions" in result.text
    assert answer.reply.count(NOT_A_DIAGNOSIS) == 1 and "never use it to make clinical decisions" not in answer.reply
    assert "All 2" not in answer.reply and "All 2" not in result.text
    pixels = read_image(with_slice.slice_path).pixels
    for name, predictor in toolbox.predictors.items():
        prediction = predictor.predict_one(pixels)[0]
        assert f"{prediction.confidence:.1%}" in result.text, name  # the figure the model gave, not a made-up one
        assert f"{prediction.confidence:.0%}" in answer.reply, name  # and the reply's sentence says it too


def test_figures_are_the_metadata_s_own(toolbox, monkeypatch):
    from tumor_ai.model.metadata import ClassScores, Metrics, Scores

    for predictor in toolbox.predictors.values():
        monkeypatch.setattr(
            predictor.metadata,
            "metrics",
            Metrics(
                Scores(images=40, accuracy=0.875, macro_f1=0.861, ece=0.05, nll=0.4),
                {"meningioma": ClassScores(precision=0.9, recall=0.8125, f1=0.85, support=16)},
            ),
        )
    answer = Router().answer(toolbox, Conversation(), "how good is the cnn on meningioma?")
    [(call, result)] = answer.calls
    assert call.arguments == {"model": "cnn", "label": "meningioma"}
    assert "accuracy 87.5%" in result.text and "macro-F1 86.1%" in result.text and "recall 81.2% (of 16 slices)" in result.text
    assert (
        answer.reply.startswith("The cnn model's recall on meningioma is 81.2%")
        and "accuracy over all classes 87.5%" in answer.reply
    )


def test_the_chat_shows_each_tool_call_its_pictures_and_suggestions(toolbox, example_paths):
    history, box, conversation = respond(toolbox, Router(), {"text": "", "files": [str(example_paths["glioma"])]}, [], None)
    assert box is None and conversation.slice_path == str(example_paths["glioma"])
    assert history[0] == {"role": "user", "content": {"path": str(example_paths["glioma"]), "orig_name": "glioma.jpg"}}
    tool_box = history[1]
    assert tool_box["metadata"]["title"].startswith("🔧 compare") and tool_box["metadata"]["status"] == "done"
    assert sum(1 for message in history if hasattr(message["content"], "value")) == 2  # one overlay per model
    assert history[-1]["options"] and all(option["value"] for option in history[-1]["options"])
    history, _, conversation = respond(
        toolbox, Router(), {"text": "**bold** <img src=x> evidence for pituitary"}, history, conversation
    )
    typed = [message for message in history if message["role"] == "user" and isinstance(message["content"], str)]
    assert typed[-1]["content"].startswith("\\*\\*bold\\*\\* &lt;img")  # shown as typed, never as markup
    titles = [(message.get("metadata") or {}).get("title", "").replace("\\", "") for message in history]
    assert sum("explain_class" in title for title in titles) == 2  # one box per model


def test_a_refused_file_is_said_in_the_chat(toolbox, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    history, _, _ = respond(toolbox, Router(), {"text": "", "files": [str(bad)]}, [], None)
    assert history[1]["metadata"]["title"].endswith("refused") and "not" in history[1]["content"].lower()


class ScriptedServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/chat/completions that calls compare_models first, then answers in words."""

    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body})
        if body["messages"][-1]["role"] == "tool":
            message = {"role": "assistant", "content": "Both models were asked; see the tool box for their answers."}
        else:
            call = {"id": "call_1", "type": "function", "function": {"name": "compare_models", "arguments": "{}"}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted_server():
    ScriptedServer.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_a_language_model_chooses_the_tools_through_inference_client(toolbox, with_slice, scripted_server):
    brain = LanguageModel("scripted-model", base_url=scripted_server, token="not-a-token")
    answer = brain.answer(toolbox, with_slice, "Which model is surer here?")
    assert [call.name for call, _ in answer.calls] == ["compare_models"]
    assert answer.reply == markdown("Both models were asked; see the tool box for their answers.")
    first, second = ScriptedServer.requests
    assert first["path"] == "/v1/chat/completions" and first["body"]["model"] == "scripted-model"
    assert {tool["function"]["name"] for tool in first["body"]["tools"]} == {
        schema["function"]["name"] for schema in tool_schemas(toolbox)
    }
    tool_message = second["body"]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_1"
    assert answer.calls[0][1].text in tool_message["content"]  # the model wrote its reply from the tool's own result


def test_an_unreachable_language_model_falls_back_to_the_router(toolbox, with_slice):
    from helpers import free_port

    from tumor_ai.app.chat import ask

    brain = LanguageModel("scripted-model", base_url=f"http://127.0.0.1:{free_port()}/v1", token="x")
    answer = ask(brain, toolbox, with_slice, "compare the models")
    assert answer.reply.startswith("_The language model could not answer") and answer.calls[0][0].name == "compare_models"


def test_medical_advice_never_reaches_the_language_model(toolbox, with_slice, scripted_server):
    answer = LanguageModel("scripted-model", base_url=scripted_server).answer(toolbox, with_slice, "should I have surgery?")
    assert answer.reply == ADVICE_REFUSAL and ScriptedServer.requests == []


def test_no_pattern_over_a_message_has_unbounded_repetition():
    """Issue 41.1: ``.*`` between words backtracked polynomially on long text and held the interpreter.

    Since issue 39 the patterns live in ``tumor_ai.core.intents`` (ADVICE, and WORD that splits a message)."""
    import re

    from tumor_ai.app import assistant
    from tumor_ai.core import intents

    patterns = {
        name: value.pattern
        for module in (assistant, intents)
        for name, value in vars(module).items()
        if isinstance(value, re.Pattern)
    }
    assert {"ADVICE", "WORD"} <= set(patterns)
    for name, pattern in patterns.items():
        assert not re.search(r"(?<!\\)[*+]|\{\d*,\}", pattern), f"{name} repeats without a bound: {pattern}"


class CappedSpy:
    """A compiled pattern that fails the test if it is ever handed more than the Assistant reads."""

    def __init__(self, pattern, limit):
        self.pattern, self.limit, self.seen = pattern, limit, []

    def search(self, text):
        self.seen.append(len(text))
        assert len(text) <= self.limit, f"a pattern was matched against {len(text)} characters"
        return self.pattern.search(text)

    def findall(self, text):
        self.seen.append(len(text))
        assert len(text) <= self.limit, f"a pattern was matched against {len(text)} characters"
        return self.pattern.findall(text)


def test_a_one_megabyte_message_is_refused_before_any_pattern_reads_it(toolbox, with_slice, scripted_server, monkeypatch):
    from tumor_ai.app import assistant
    from tumor_ai.core import intents
    from tumor_ai.core.wording import message_too_long

    spies = {}
    for name in ("ADVICE", "WORD"):  # every pattern the intent classifier reads a message with
        spies[name] = CappedSpy(getattr(intents, name), assistant.MESSAGE_LIMIT)
        monkeypatch.setattr(intents, name, spies[name])
    seen = []
    real_intent_of = assistant.intent_of

    def capped_intent_of(text, *args):
        seen.append(len(text))
        assert len(text) <= assistant.MESSAGE_LIMIT, f"the classifier was handed {len(text)} characters"
        return real_intent_of(text, *args)

    monkeypatch.setattr(assistant, "intent_of", capped_intent_of)
    huge = "tumour " * 150_000  # ~1 MB of one repeated word, as the hostile trial sent
    refusal = message_too_long(len(huge.strip()), assistant.MESSAGE_LIMIT)
    history, _, conversation = respond(toolbox, Router(), {"text": huge}, [], with_slice)
    assert history[-1]["content"] == refusal
    shown = history[0]["content"]
    assert len(shown) < 3 * assistant.MESSAGE_LIMIT and shown.endswith("…")  # the page gets the message cut
    assert all(len(turn["content"]) <= assistant.MESSAGE_LIMIT for turn in conversation.turns)
    answer = LanguageModel("scripted-model", base_url=scripted_server).answer(toolbox, with_slice, huge)
    assert answer.reply.startswith("That message is") and ScriptedServer.requests == []
    # A message at the limit is still routed, by the bounded patterns, to what it asks.
    near = ("which model is surer " * 200)[: assistant.MESSAGE_LIMIT]
    assert Router().answer(toolbox, with_slice, near).calls[0][0].name == "compare_models"
    assert max(size for spy in spies.values() for size in spy.seen) <= assistant.MESSAGE_LIMIT
    assert seen and max(seen) <= assistant.MESSAGE_LIMIT


FIELD = '<form action="https:evil.example"><input type=password name=q></form><img src="http://evil.example/p.png">'


def _rendered_elements(text: str) -> set[str]:
    """The HTML elements ``text`` forms when rendered as the chat renders Markdown (CommonMark, raw HTML on)."""
    from html.parser import HTMLParser

    from markdown_it import MarkdownIt

    found: set[str] = set()

    class Elements(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.add(tag)

    Elements().feed(MarkdownIt("commonmark", {"html": True}).render(text))
    return found


def test_a_dicom_field_in_a_tool_s_refusal_reaches_the_chat_as_text(toolbox, tmp_path):
    """Issue 41.4: a refusal quoting BodyPartExamined rendered a form and fetched an outside image in the chat."""
    dicom = tmp_path / "field.dcm"
    write_hostile_mr_dicom(dicom, FIELD)
    history, _, _ = respond(toolbox, Router(), {"text": "", "files": [str(dicom)]}, [], None)
    shown = [message["content"] for message in history if isinstance(message["content"], str)]
    assert any("evil.example" in text.replace("\\", "") for text in shown)  # the refusal quotes the field ...
    for text in shown:  # ... and no message forms an element beyond the chat's own emphasis
        assert _rendered_elements(text) <= {"p", "br", "strong", "em", "ul", "li"}, text


def test_a_language_model_s_words_are_shown_as_text(toolbox, with_slice):
    from types import SimpleNamespace

    class Echo:  # a chat model that repeats the file's field back, as one may
        def chat_completion(self, *args, **kwargs):
            message = SimpleNamespace(tool_calls=None, content=f"The body part is {FIELD} [see](http://evil.example)")
            return SimpleNamespace(choices=[SimpleNamespace(message=message)])

    brain = LanguageModel("scripted-model", base_url="http://127.0.0.1:9/v1")
    brain.client = Echo()
    reply = brain.answer(toolbox, with_slice, "what body part is it?").reply
    assert _rendered_elements(reply) <= {"p"}, reply
