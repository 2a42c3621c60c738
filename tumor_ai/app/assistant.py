"""The Assistant tab's brains: what a question asks for, which tools answer it, and the reply.

Two brains share one contract: given the conversation so far and the new message, return the tool
calls made (each with its result) and a reply. ``Router`` is deterministic and always there: it reads
what a message asks for (``tumor_ai.core.intents``: a small classifier that survives paraphrase and
typos), fills in what a follow-up leaves out from the conversation's memory (the last slice, models,
class and answer), runs the tools, and leads its reply with one sentence that answers the question
(``tumor_ai.core.wording``); the tool boxes hold the detail. ``LanguageModel`` hands the choice of tools
and the wording of the reply to a chat model through
``huggingface_hub.InferenceClient.chat_completion(tools=...)`` (the HF Inference Providers, or any
OpenAI-compatible server by its base URL), and the router answers when it fails. Either way the figures
come from the tools or the models' metadata, and a request for medical advice gets one sentence and no tool.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Protocol

from tumor_ai import DISCLAIMER
from tumor_ai.app.tools import Toolbox, ToolError, ToolResult, read_slice
from tumor_ai.core import wording
from tumor_ai.core.intents import ADVICE, find_label, find_models, find_terms, intent_of, words
from tumor_ai.core.safe_text import markdown
from tumor_ai.core.wording import ADVICE_REFUSAL, HELP, HIDE_ANSWER, NEEDS_SLICE, message_too_long
from tumor_ai.model.labels import display_name

# The longest message either brain reads: a longer one is refused before any pattern or the classifier sees it.
# Everything after the cap is linear in the text (bounded patterns, one pass for the features).
MESSAGE_LIMIT = 2_000
SLICE_INTENTS = ("classify", "compare", "evidence", "confidence")
TALKS_OF_SLICE = {"this", "it", "here", "slice", "scan", "image", "picture", "one"}
NEEDS_SEVERAL = "Drop several slices (or a .zip of them) into the box together, then ask for a summary."
__all__ = ["ADVICE", "ADVICE_REFUSAL", "HELP", "HIDE_ANSWER", "NEEDS_SLICE", "Router", "LanguageModel"]
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
    """What a session's chat holds between messages: the slices dropped so far (paths in Gradio's cache), and what
    the last answer was about, so that "why?", "and the other model?" or "is it sure?" continue from it."""

    slice_path: str | None = None
    batch_paths: list[str] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)  # plain {"role", "content"} text turns, for a language model
    last_intent: str | None = None
    last_models: list[str] = field(default_factory=list)
    last_label: str | None = None
    last_predictions: dict = field(default_factory=dict)  # model name -> Prediction for the current slice
    last_reply: str = ""

    def new_slice(self) -> None:
        """A new slice was dropped: what was said of the old one no longer holds."""
        self.last_models, self.last_label, self.last_predictions = [], None, {}


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
    return find_models(text, toolbox.names)


def mentioned_label(toolbox: Toolbox, text: str) -> str | None:
    """The class a message names, by label or display name ("meningiomas", "no tumour", "menigioma")."""
    return find_label(text, toolbox.labels)


@dataclass
class Plan:
    """What the router decided: the intent (a follow-up resolved), the models and class it is about, the calls."""

    intent: str
    calls: list[ToolCall]
    models: list[str] = field(default_factory=list)
    label: str | None = None
    said: str = ""  # a sentence instead of tools


class Router:
    """The deterministic brain: intents to tools, so the tab works with no language model configured."""

    def answer(self, toolbox: Toolbox, conversation: Conversation, text: str) -> Answer:
        if len(text) > MESSAGE_LIMIT:  # before any pattern or the classifier reads it
            return Answer([], message_too_long(len(text), MESSAGE_LIMIT))
        plan = self.decide(toolbox, conversation, text.strip())
        if plan.said:
            if plan.intent not in ("advice", "other"):
                conversation.last_intent = plan.intent
            return Answer([], plan.said)
        done = [(call, run_call(toolbox, conversation, call)) for call in plan.calls]
        reply = self.reply(toolbox, conversation, text.lower(), plan, done)
        self.remember(conversation, plan, done, reply)
        return Answer(done, reply)

    @staticmethod
    def plan(toolbox: Toolbox, conversation: Conversation, text: str) -> list[ToolCall] | str:
        """The tool calls a message asks for, or a sentence when none fits."""
        decided = Router.decide(toolbox, conversation, text)
        return decided.said or decided.calls

    @staticmethod
    def decide(toolbox: Toolbox, conversation: Conversation, text: str) -> Plan:
        has_slice = conversation.slice_path is not None
        intent = intent_of(text, has_slice).name
        lowered = text.lower()
        models, label = mentioned_models(toolbox, lowered), mentioned_label(toolbox, lowered)
        if intent == "advice":
            return Plan(intent, [], said=ADVICE_REFUSAL)
        if len(conversation.batch_paths) > 1 and (intent == "batch" or not lowered):
            return Plan("batch", [ToolCall("summarise_batch")])
        if intent == "other_model":  # the last question again, with the model(s) it did not use
            intent = conversation.last_intent if conversation.last_intent not in (None, "other_model") else "classify"
            if not models:
                models = [name for name in toolbox.names if name not in conversation.last_models] or toolbox.names
            label = label or (conversation.last_label if intent == "evidence" else None)
            if intent in ("compare",):
                intent = "classify"
        if intent == "greeting":
            return Plan(intent, [], said=wording.greeting(has_slice))
        if intent == "other":
            return Plan(intent, [], said=wording.not_understood(has_slice))
        if intent == "hide":
            return Plan(intent, [], said=HIDE_ANSWER)
        if intent == "term":
            terms = find_terms(lowered)
            cam = [ToolCall("explain_grad_cam")] if {"gradcam", "layercam"} & set(terms) else []
            return Plan(intent, cam, label=None)
        if intent == "training":
            return Plan(intent, [])
        if intent == "figures":
            arguments = {"label": label} if label else {}
            chosen = models or toolbox.names
            return Plan(intent, [ToolCall("model_figures", {"model": m, **arguments}) for m in chosen], chosen, label)
        if intent == "better":
            calls = [ToolCall("model_figures", {"model": model}) for model in toolbox.names]
            if has_slice and TALKS_OF_SLICE & set(words(lowered)):
                calls.insert(0, ToolCall("compare_models"))
            return Plan(intent, calls, list(toolbox.names))
        if intent == "batch":
            return Plan(intent, [], said=NEEDS_SEVERAL if has_slice else NEEDS_SLICE)
        if not has_slice:
            return Plan(intent, [], said=NEEDS_SLICE)
        if intent == "evidence":
            if label:
                chosen = models or toolbox.names
                return Plan(intent, [ToolCall("explain_class", {"label": label, "model": m}) for m in chosen], chosen, label)
            chosen = models[:1] or Router.follow(toolbox, conversation)
            follow_label = conversation.last_label if conversation.last_intent == "evidence" else None
            if follow_label:
                return Plan(
                    intent, [ToolCall("explain_class", {"label": follow_label, "model": chosen[0]})], chosen, follow_label
                )
            return Plan(intent, [ToolCall("classify_slice", {"model": chosen[0]})], chosen)
        if intent == "confidence":
            if len(models) == 1:
                return Plan(intent, [ToolCall("classify_slice", {"model": models[0]})], models)
            return Plan(intent, [ToolCall("compare_models")], list(toolbox.names))
        if label and intent == "classify" and not models and not lowered.startswith(("is", "could", "does", "can")):
            return Plan("evidence", [ToolCall("explain_class", {"label": label, "model": m}) for m in toolbox.names], [], label)
        if len(models) == 1 and intent == "classify":
            return Plan(intent, [ToolCall("classify_slice", {"model": models[0]})], models, label)
        return Plan(intent, [ToolCall("compare_models")], list(toolbox.names), label)

    @staticmethod
    def follow(toolbox: Toolbox, conversation: Conversation) -> list[str]:
        """The model a follow-up is about: the last one asked of, else the surest of the last answer, else the first."""
        if len(conversation.last_models) == 1:
            return list(conversation.last_models)
        shown = {name: p for name, p in conversation.last_predictions.items() if p.is_mri}
        if shown:
            return [max(shown, key=lambda name: shown[name].confidence)]
        return toolbox.names[:1]

    @staticmethod
    def reply(toolbox: Toolbox, conversation: Conversation, text: str, plan: Plan, done) -> str:
        """One short sentence that answers the question (from the tools' results or the metadata), then the
        short disclaimer, once; the tool boxes above hold the detail."""
        refusals = [markdown(result) for _, result in done if not isinstance(result, ToolResult)]
        results = [result for _, result in done if isinstance(result, ToolResult)]
        predictions = {name: p for result in results for name, p in result.facts.get("predictions", {}).items()}
        metadata = {name: predictor.metadata for name, predictor in toolbox.predictors.items()}
        intent, lead = plan.intent, ""
        if intent == "term":
            lead = wording.definition(find_terms(text))
        elif intent == "training":
            lead = wording.trained(metadata)
        elif intent == "figures":
            lead = " ".join(wording.figures_lead(name, metadata[name], plan.label) for name in plan.models)
        elif intent == "better":
            lead = wording.better_model(metadata)
            if predictions:  # "which should I trust for this slice?": the slice first, then the models overall
                lead = f"On this slice: {wording.verdict(predictions)} {wording.surest(predictions)}".rstrip() + "\n\n" + lead
        elif intent == "batch":
            lead = " ".join(wording.batch_lead(result.facts["summary"]) for result in results if "summary" in result.facts)
        elif intent == "evidence" and all(p.is_mri for p in predictions.values()):
            leads = []
            for result in results:
                facts = result.facts
                if "region" in facts:
                    leads.append(
                        wording.evidence_lead(
                            facts["model"], facts["label"], facts["predictions"][facts["model"]], facts["region"]
                        )
                    )
            lead = " ".join(leads)
        elif intent == "confidence":
            known = {**conversation.last_predictions, **predictions}
            lead = wording.confidence_lead(predictions, plan.models if len(plan.models) == 1 else [], known)
        if not lead and predictions:
            lead = wording.slice_lead(predictions, "tumour" in words(text), plan.label)
        lead = " ".join(filter(None, [*refusals, lead]))
        return f"{lead}\n\n{wording.SHORT_DISCLAIMER}" if lead else wording.SHORT_DISCLAIMER

    @staticmethod
    def remember(conversation: Conversation, plan: Plan, done, reply: str) -> None:
        results = [result for _, result in done if isinstance(result, ToolResult)]
        predictions = {name: p for result in results for name, p in result.facts.get("predictions", {}).items()}
        conversation.last_intent = plan.intent
        if predictions:
            conversation.last_predictions = {**conversation.last_predictions, **predictions}
        conversation.last_models = list(predictions) if plan.intent in SLICE_INTENTS and predictions else plan.models
        conversation.last_label = plan.label or next(
            (result.facts["label"] for result in results if "label" in result.facts and "region" in result.facts), None
        )
        conversation.last_reply = reply


def suggestions(toolbox: Toolbox, conversation: Conversation) -> list[str]:
    """What to ask next, given what the conversation holds: follow-ups once a slice has been read."""
    if conversation.slice_path is None:
        return ["Which model is better?", "What does Grad-CAM show?", f"How accurate is the {toolbox.names[-1]} model?"]
    other = toolbox.labels[1] if len(toolbox.labels) > 1 else toolbox.labels[0]
    if conversation.last_predictions:
        asks = ["Why?", "And the other model?", f"Show me that for {display_name(other).lower()}", "Which model is better?"]
    else:
        asks = ["Is there a tumour?", "Which model is surer?", "What does Grad-CAM show?"]
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
        if intent_of(text, conversation.slice_path is not None).name == "advice":  # the router's own decision
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
            if not choice.tool_calls and not (choice.content or "").strip() and not done:
                return Router().answer(toolbox, conversation, text)  # said nothing: the same intents answer
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
