"""Print the README's Assistant conversation, as the shipped models answer it today.

    python scripts/assistant_transcript.py

The built-in router and the models in ``models/``, with ``tumor_ai/examples/meningioma.jpg`` attached;
each line is a README blockquote line (question, the tools called, the reply without its closing
"not a diagnosis" sentence). Paste its output over the README's conversation when a model changes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
QUESTIONS = (
    "hi",
    "is there a tumour?",
    "why?",
    "and the other model?",
    "which model is better overall?",
    "what is a meningioma?",
)


def main() -> None:
    from tumor_ai import NOT_A_DIAGNOSIS
    from tumor_ai.app.assistant import Router
    from tumor_ai.app.chat import respond
    from tumor_ai.app.tools import Toolbox
    from tumor_ai.core.inference import Predictor

    toolbox = Toolbox({name: Predictor.from_source(ROOT / "models" / name) for name in ("cnn", "vgg16")})
    history, _, conversation = respond(toolbox, Router(), {"files": [str(ROOT / "tumor_ai/examples/meningioma.jpg")]}, [], None)
    for question in QUESTIONS:
        history, _, conversation = respond(toolbox, Router(), {"text": question}, history, conversation)
        since = max(index for index, message in enumerate(history) if message["role"] == "user")
        titles = [message.get("metadata", {}).get("title") for message in history[since:] if message["role"] == "assistant"]
        names = [re.sub(r"\\(.)", r"\1", title).removeprefix("🔧 ") for title in titles if title]
        bare = [name.split("(")[0] for name in names]
        repeated = len(names) > 1 and len(set(bare)) == 1  # one tool called per model: its name and the count
        tools = [f"{bare[0]}` ×{len(names)}" if repeated else ", ".join(names) + "`"] if names else []
        reply = history[-1]["content"].replace(f"_{NOT_A_DIAGNOSIS}_", "").replace(NOT_A_DIAGNOSIS, "").strip()
        reply = reply.replace("\n\n", " ").replace("\n", " ")
        shown = f" — `{tools[0]}" if tools else ""
        print(f"> **{question}**{shown} — {reply}<br>")


if __name__ == "__main__":
    main()
