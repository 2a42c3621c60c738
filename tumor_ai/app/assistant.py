"""The Assistant tab's brains: what a question asks for, which tools answer it, and the reply.

Two brains share one contract: given the conversation so far and the new message, return the tool
calls made (each with its result) and a reply. ``Router`` is deterministic and always there: it
maps the questions people ask (compare, evidence for a class, how sure, how accurate, what Grad-CAM
is, a batch) to tools and says what it can answer when it cannot. ``LanguageModel`` hands the
choice of tools and the wording of the reply to a chat model through
``huggingface_hub.InferenceClient.chat_completion(tools=...)`` (the HF Inference Providers, or any
OpenAI-compatible server by its base URL). Either way the figures come from the tools, and a
request for medical advice gets one sentence and no tool.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Protocol

from tumor_ai import DISCLAIMER
from tumor_ai.app.tools import Toolbox, ToolError, ToolResult, read_slice
from tumor_ai.core.safe_text import markdown
from tumor_ai.core.wording import message_too_long
from tumor_ai.model.labels import display_name

ADVICE_REFUSAL = (
    "I can't give medical advice or say what a scan means for a person: tumor-ai is a research and teaching "
    "tool, not a diagnosis, so please ask a doctor."
)
ADVICE = re.compile(
    r"\b(should i|do i have|have i got|am i\b|my (own |)(scan|mri|tumou?r|brain|head|results?|doctor|diagnosis)|"
    r"my (mother|mom|mum|father|dad|wife|husband|son|daughter|child|friend|partner|patient)|"
    r"treat(ment)?|surgery|operate|operation|chemo|radiotherapy|prognosis|life expectancy|survive|survival|"
    r"how long\b.{0,40}\blive|is it (cancer|malignant|benign)|medication|medicine|cure)\b"
)
GRAD_CAM = re.compile(r"grad.?cam|layer.?cam|heat ?map|overlay|saliency|(what|how)\b.{0,60}\b(map|red|colou?rs?)\b")
FIGURES = re.compile(r"accura|how good|how well|recall|precision|\bf1\b|validation|reliab|perform|error rate|figures|metric")
EVIDENCE = re.compile(r"evidence|why|where|look|show|map for|point")
COMPARE = re.compile(r"compare|both|which model|surer|sure|confiden|certain|agree|classif|predict|read|what (is|does|do)|answer")
BATCH = re.compile(r"batch|summar|all (of )?(them|these|the)|these|each|count")
HIDE = re.compile(r"\b(hide|erase|remove|mask|cover)\b")
# The longest message either brain reads. Every pattern above is bounded (no ``.*`` between words), so matching is
# linear in the text; the cap keeps it short as well: a long message is refused before any pattern sees it.
MESSAGE_LIMIT = 2_000
HELP = (
    "I can answer, from the models themselves: what each model reads in a slice and which is surer; where a model "
    'found evidence for a class you name ("show the evidence for meningioma"); how accurate each model is, overall '
    "or for one class; what Grad-CAM shows; and a summary of several slices at once. Drop one or more slices "
    "(JPG, PNG, DICOM or a .zip) into the box to start."
)
NEEDS_SLICE = "Drop a brain MRI slice into the box first (JPG, PNG, BMP, TIFF, WebP or DICOM), then ask again."
HIDE_ANSWER = (
    'Hiding a region needs a brush: open the Predict or Compare tab, run the slice, and use "Hide a region and ask '
    'again" below the answer. Both models answer again with the region filled from its surroundings.'
)
log = logging.getLogger("tumor_ai.app.assistant")


@dataclass
class ToolCall:
    """One tool the brain chose, with its arguments (the slice is the conversation's, never an argument)."""

    name: str
    arguments: dict = field(default_factory=dict)

    def title(self) -> str:
        shown = ", ".join(f"{key}={value}" for key, value in self.arguments.items())
        return f"🔧 {self.name}({shown})"


@dataclass
class Conversation:
    """What a session's chat holds between messages: the slices dropped so far (paths in Gradio's cache)."""

    slice_path: str | None = None
    batch_paths: list[str] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)  # plain {"role", "content"} text turns, for a language model


@dataclass
class Answer:
    """A brain's answer to one message: the tools it ran, with results, and the reply."""

    calls: list[tuple[ToolCall, ToolResult | str]]
    reply: str


class Brain(Protocol):
    def answer(self, toolbox: Toolbox, conversation: Conversation, text: str) -> Answer: ...


def run_call(toolbox: Toolbox, conversation: Conversation, call: ToolCall) -> ToolResult | str:
    """Run one tool on the conversation's slice; a refusal or bad argument comes back as its sentence."""
    arguments = dict(call.arguments)
    try:
        if call.name == "summarise_batch":
            return toolbox.summarise_batch(conversation.batch_paths)
        if call.name in ("model_figures", "explain_grad_cam"):
            return getattr(toolbox, call.name)(**arguments)
        if call.name not in ("classify_slice", "compare_models", "explain_class"):
            return f"There is no tool named {call.name}."
        return getattr(toolbox, call.name)(read_slice(conversation.slice_path), **arguments)
    except (ToolError, TypeError) as error:
        return str(error) if isinstance(error, ToolError) else f"{call.name} was called with arguments it does not take."


def joined(done: list[tuple[ToolCall, ToolResult | str]]) -> str:
    """The tools' answers as one reply: a result's own Markdown, and a refusal (which may quote a file's name or a
    DICOM field) as literal characters (``safe_text.markdown``)."""
    return "\n\n".join(result.text if isinstance(result, ToolResult) else markdown(result) for _, result in done)


def mentioned_models(toolbox: Toolbox, text: str) -> list[str]:
    plain = re.sub(r"[^a-z0-9]", "", text.lower())
    return [name for name in toolbox.names if re.sub(r"[^a-z0-9]", "", name.lower()) in plain]


def mentioned_label(toolbox: Toolbox, text: str) -> str | None:
    """The class a message names, by label or display name ("meningiomas", "no tumour", "notumor")."""
    lowered = text.lower().replace("tumor", "tumour")
    for label in sorted(toolbox.labels, key=lambda label: -len(display_name(label))):
        names = {label.lower().replace("tumor", "tumour"), display_name(label).lower().replace("tumor", "tumour")}
        if any(name in lowered or name.replace(" ", "") in lowered.replace(" ", "") for name in names):
            return label
    return None


class Router:
    """The deterministic brain: keywords to tools, so the tab works with no language model configured."""

    def answer(self, toolbox: Toolbox, conversation: Conversation, text: str) -> Answer:
        if len(text) > MESSAGE_LIMIT:
            return Answer([], message_too_long(len(text), MESSAGE_LIMIT))
        lowered = text.lower().strip()
        if ADVICE.search(lowered):
            return Answer([], ADVICE_REFUSAL)
        calls = self.plan(toolbox, conversation, lowered)
        if isinstance(calls, str):
            return Answer([], calls)
        done = [(call, run_call(toolbox, conversation, call)) for call in calls]
        return Answer(done, joined(done))

    @staticmethod
    def plan(toolbox: Toolbox, conversation: Conversation, text: str) -> list[ToolCall] | str:
        """The tool calls a message asks for, or a sentence when none fits."""
        models = mentioned_models(toolbox, text)
        label = mentioned_label(toolbox, text)
        if GRAD_CAM.search(text) and not (label and EVIDENCE.search(text) and conversation.slice_path):
            return [ToolCall("explain_grad_cam")]
        if FIGURES.search(text):
            arguments = {"label": label} if label else {}
            return [ToolCall("model_figures", {"model": model, **arguments}) for model in models or toolbox.names]
        if HIDE.search(text):
            return HIDE_ANSWER
        if len(conversation.batch_paths) > 1 and (BATCH.search(text) or not text):
            return [ToolCall("summarise_batch")]
        if conversation.slice_path is None:
            return NEEDS_SLICE if (label or COMPARE.search(text) or EVIDENCE.search(text)) else HELP
        if label and (EVIDENCE.search(text) or not COMPARE.search(text)):
            return [ToolCall("explain_class", {"label": label, "model": model}) for model in models or toolbox.names]
        if not text or COMPARE.search(text):
            if len(models) == 1 and not re.search(r"compare|both|which|surer", text):
                return [ToolCall("classify_slice", {"model": models[0]})]
            return [ToolCall("compare_models")]
        return HELP


def suggestions(toolbox: Toolbox, conversation: Conversation) -> list[str]:
    """What to ask next, given what the conversation holds."""
    if conversation.slice_path is None:
        return ["What does Grad-CAM show?", f"How accurate is the {toolbox.names[-1]} model?"]
    other = toolbox.labels[1] if len(toolbox.labels) > 1 else toolbox.labels[0]
    asks = [
        "Which model is surer?",
        f"Show the evidence for {display_name(other).lower()}",
        f"How good is the {toolbox.names[-1]} model on {display_name(other).lower()}?",
        "What does Grad-CAM show?",
    ]
    if len(conversation.batch_paths) > 1:
        asks.insert(0, "Summarise all the slices")
    return asks


TOOL_PARAMETERS = {
    "classify_slice": {"model": "which model reads the slice"},
    "compare_models": {},
    "explain_class": {"label": "the class whose evidence to show", "model": "which model"},
    "model_figures": {"model": "which model", "label": "optional: one class"},
    "summarise_batch": {},
    "explain_grad_cam": {},
}
SYSTEM_PROMPT = (
    "You are the assistant of tumor-ai, a research and teaching tool that classifies brain MRI slices into "
    "{labels} with two models ({models}) and shows where each looked (Grad-CAM). Answer only from tool results: "
    "never state a figure a tool did not return. The slice is the one the user dropped into the chat; tools read it "
    "themselves. Keep answers short and plain. If the user asks for medical advice or what a scan means for a "
    "person, reply with one sentence saying you cannot, and call no tool. End every answer about a slice with: "
    f"{DISCLAIMER}"
)


def tool_schemas(toolbox: Toolbox) -> list[dict]:
    """The tools as OpenAI-style function schemas, described by the ``Toolbox`` methods' own docstrings."""
    enums = {"model": toolbox.names, "label": toolbox.labels}
    schemas = []
    for name, parameters in TOOL_PARAMETERS.items():
        properties = {key: {"type": "string", "description": text, "enum": enums[key]} for key, text in parameters.items()}
        required = [key for key, text in parameters.items() if not text.startswith("optional")]
        description = (getattr(Toolbox, name).__doc__ or "").strip().splitlines()[0]
        schemas.append(
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": description,
                    "parameters": {"type": "object", "properties": properties, "required": required},
                },
            }
        )
    return schemas


class LanguageModel:
    """A chat model that chooses the tools and writes the reply from their results (``InferenceClient``).

    ``base_url`` points it at any OpenAI-compatible server; without it, ``model`` is a Hub model id
    served by the HF Inference Providers. ``token`` is sent to that server alone (``tumor_ai.app.serve.assistant_key``).
    """

    def __init__(self, model: str, base_url: str | None = None, token: str | None = None, rounds: int = 3):
        from huggingface_hub import InferenceClient

        self.model, self.rounds = model, rounds
        # A base URL takes the model name in each request; a Hub model id is routed by the Inference Providers.
        # Without a key of its own a base URL gets no Authorization header: huggingface_hub would add HF_TOKEN to it.
        headers = {"authorization": None} if base_url and not token else None
        self.client = (
            InferenceClient(base_url=base_url, api_key=token, headers=headers)
            if base_url
            else InferenceClient(model, api_key=token)
        )

    def answer(self, toolbox: Toolbox, conversation: Conversation, text: str) -> Answer:
        if len(text) > MESSAGE_LIMIT:
            return Answer([], message_too_long(len(text), MESSAGE_LIMIT))
        if ADVICE.search(text.lower()):
            return Answer([], ADVICE_REFUSAL)
        system = SYSTEM_PROMPT.format(labels=", ".join(map(display_name, toolbox.labels)), models=" and ".join(toolbox.names))
        slice_note = " (a slice is in the chat)" if conversation.slice_path else " (no slice in the chat yet)"
        messages = [{"role": "system", "content": system}, *conversation.turns[-8:]]
        messages.append({"role": "user", "content": text + slice_note})
        done: list[tuple[ToolCall, ToolResult | str]] = []
        for _ in range(self.rounds):
            choice = (
                self.client.chat_completion(
                    messages, model=self.model, tools=tool_schemas(toolbox), tool_choice="auto", max_tokens=700
                )
                .choices[0]
                .message
            )
            if not choice.tool_calls:  # a model's words may echo a file's text: shown as the characters they are
                return Answer(done, markdown(choice.content or ""))
            messages.append({"role": "assistant", "content": choice.content or "", "tool_calls": _plain_calls(choice.tool_calls)})
            for requested in choice.tool_calls:
                call = ToolCall(requested.function.name, _arguments(requested.function.arguments))
                result = run_call(toolbox, conversation, call)
                done.append((call, result))
                content = result.text if isinstance(result, ToolResult) else result
                messages.append({"role": "tool", "tool_call_id": requested.id, "name": call.name, "content": content})
        return Answer(done, joined(done))


def _arguments(raw) -> dict:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _plain_calls(calls) -> list[dict]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.function.name, "arguments": json.dumps(_arguments(call.function.arguments))},
        }
        for call in calls
    ]
