"""The Assistant tab's events: a message (text and dropped slices) in; tool boxes, overlays and a reply out.

Each tool call is shown as a collapsible message (Gradio's ``metadata`` title and status) holding
what the tool returned, its pictures follow inline, and the reply ends with suggested questions
(the message's ``options``). What a person typed is shown as text, never as Markdown.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from tumor_ai.app.assistant import MESSAGE_LIMIT, Answer, Brain, Conversation, Router, suggestions
from tumor_ai.app.cache import cache_picture
from tumor_ai.app.tools import Toolbox, ToolResult
from tumor_ai.app.workspace import upload_path
from tumor_ai.core.safe_text import markdown

ARCHIVES = (".zip",)
log = logging.getLogger("tumor_ai.app.assistant")


def adopt_files(conversation: Conversation, payloads: list) -> list[str]:
    """Dropped files become the conversation's slices: the first picture is "the slice", all of them the batch."""
    paths = [path for path in (upload_path(payload) for payload in payloads or []) if path]
    if paths:
        conversation.batch_paths = paths
        pictures = [path for path in paths if not path.lower().endswith(ARCHIVES)]
        conversation.slice_path = pictures[0] if pictures else conversation.slice_path
        conversation.new_slice()
    return paths


def ask(brain: Brain, toolbox: Toolbox, conversation: Conversation, text: str) -> Answer:
    """The brain's answer; if a language model fails (offline, refused, malformed), the router answers and says why."""
    try:
        return brain.answer(toolbox, conversation, text)
    except Exception as error:  # any failure of a remote model must leave the chat working
        if isinstance(brain, Router):
            raise
        log.warning("assistant language model failed: %s", type(error).__name__)
        answer = Router().answer(toolbox, conversation, text)
        note = f"_The language model could not answer ({type(error).__name__}); the built-in router answered instead._"
        return Answer(answer.calls, f"{note}\n\n{answer.reply}")


def tool_messages(calls) -> list[dict]:
    """Each tool call as a collapsed box with its result, followed by its pictures."""
    messages = []
    for call, result in calls:
        failed = not isinstance(result, ToolResult)
        body = markdown(result) if failed else result.text  # a refusal may quote a file's name or a DICOM field
        title = markdown(call.title()) + (" — refused" if failed else "")
        messages.append({"role": "assistant", "content": body, "metadata": {"title": title, "status": "done"}})
        if not failed:
            for picture, caption in zip(result.pictures, result.captions):
                image = gr.Image(cache_picture(picture, "assistant.jpg"), label=caption, show_label=True, buttons=["download"])
                messages.append({"role": "assistant", "content": image})
    return messages


def respond(toolbox: Toolbox, brain: Brain, message: dict | None, history: list | None, conversation: Conversation | None):
    """The box was submitted: show what was sent, run the brain, show its tools and reply, clear the box."""
    conversation = conversation or Conversation()
    history = list(history or [])
    message = message or {}
    dropped = adopt_files(conversation, message.get("files"))
    text = str(message.get("text") or "").strip()
    for path in dropped:
        history.append({"role": "user", "content": {"path": path, "orig_name": Path(path).name}})
    if text:  # a long message is shown cut (the brain refuses it whole), so the page never carries a megabyte back
        shown = text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "…"
        history.append({"role": "user", "content": markdown(shown)})
    if not dropped and not text:
        return history, None, conversation
    answer = ask(brain, toolbox, conversation, text)
    history += tool_messages(answer.calls)
    options = [{"value": ask_next, "label": ask_next} for ask_next in suggestions(toolbox, conversation)]
    history.append({"role": "assistant", "content": answer.reply, "options": options})
    conversation.turns.append({"role": "user", "content": text[:MESSAGE_LIMIT] or "(dropped a slice)"})
    conversation.turns.append({"role": "assistant", "content": answer.reply})
    return history, None, conversation


def suggestion_chosen(
    toolbox: Toolbox, brain: Brain, history: list | None, conversation: Conversation | None, chosen: gr.SelectData
):
    """A suggested question was clicked: ask it as if typed."""
    value = chosen.value.get("value") if isinstance(chosen.value, dict) else chosen.value
    return respond(toolbox, brain, {"text": str(value)}, history, conversation)
