"""Serve the app: build the page, serve it, load the models behind it (``tumor-ai serve``, ``python app.py``).

    tumor-ai serve --models models/        # http://127.0.0.1:7860
    tumor-ai serve --share                 # plus a public *.gradio.live link
    tumor-ai serve --vgg16 hf://USER/tumor-ai-vgg16 --cnn hf://USER/tumor-ai-cnn@v1

One model per registered architecture (tumor_ai.model.registry: cnn and vgg16), each from --NAME:
a folder, a .keras file or hf://USER/REPO[@REVISION]; also from the environment
variables TUMOR_AI_CNN and TUMOR_AI_VGG16; on a Hugging Face Space, the repos README.md preloads;
else the cnn/ and vgg16/ folders of --models (env TUMOR_AI_MODELS; from a clone, its models/). A
Hub source that cannot be loaded falls back to those folders, and the page says so. The page is served
within seconds; the models load behind it, and the page says "Loading the models…" until they are ready.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import time
import warnings

from tumor_ai.app.workspace import CACHE_SWEEP
from tumor_ai.core.engine import ENGINE_ENV, ENGINE_HELP, ENGINES
from tumor_ai.model.sources import add_source_arguments

STARTED = time.perf_counter()  # the start-up's clock: this module is the first thing app.py and tumor-ai serve import

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog or "python app.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to bind (default 127.0.0.1; 0.0.0.0 for a LAN)",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)), help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link for a demo")
    add_source_arguments(parser)
    parser.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        default=os.environ.get("TUMOR_AI_PRECISION", "auto"),
        help="compute precision: 'auto' is bfloat16 where the CPU has AVX512-BF16 or AMX (about 2x faster for VGG16), "
        "else float32 (env TUMOR_AI_PRECISION)",
    )
    parser.add_argument("--engine", choices=ENGINES, default=os.environ.get(ENGINE_ENV, "auto"), help=ENGINE_HELP)
    parser.add_argument(
        "--allow-no-mri-check",
        action="store_true",
        help="serve a model that has no not-an-MRI check (mri_check.npz): any picture then gets a class, "
        "and the page and the API say the check is off",
    )
    parser.add_argument(
        "--mcp",
        action=argparse.BooleanOptionalAction,
        default=bool(os.environ.get("SPACE_ID")) or os.environ.get("GRADIO_MCP_SERVER", "").lower() == "true",
        help="also serve the tools to MCP clients at /gradio_api/mcp/ (default: on in a Hugging Face Space, else off)",
    )
    parser.add_argument(
        "--assistant-model",
        default=os.environ.get("TUMOR_AI_ASSISTANT_MODEL"),
        help="a chat model that picks the Assistant's tools and words its replies: a Hub model id served by the HF "
        "Inference Providers (needs HF_TOKEN), or a model name on --assistant-base-url (env TUMOR_AI_ASSISTANT_MODEL; "
        "default: none, the built-in router, which reads questions with an intent classifier)",
    )
    parser.add_argument(
        "--assistant-base-url",
        default=os.environ.get("TUMOR_AI_ASSISTANT_BASE_URL"),
        help="an OpenAI-compatible server for --assistant-model, e.g. http://127.0.0.1:8080/v1 (env TUMOR_AI_ASSISTANT_BASE_URL)",
    )
    parser.add_argument(
        "--assistant-api-key",
        default=os.environ.get("TUMOR_AI_ASSISTANT_API_KEY"),
        help="the key of the server --assistant-base-url names, sent to it alone (env TUMOR_AI_ASSISTANT_API_KEY, which "
        "keeps it out of the process list); without it HF_TOKEN is sent only to a Hugging Face server, never elsewhere",
    )
    parser.add_argument(
        "--sweep-every",
        type=_seconds,
        default=os.environ.get("TUMOR_AI_SWEEP_EVERY", str(CACHE_SWEEP[0])),  # a string: argparse checks it too
        help=f"seconds between sweeps of the app's temporary folder (env TUMOR_AI_SWEEP_EVERY; default {CACHE_SWEEP[0]})",
    )
    parser.add_argument(
        "--sweep-age",
        type=_seconds,
        default=os.environ.get("TUMOR_AI_SWEEP_AGE", str(CACHE_SWEEP[1])),
        help="a sweep deletes uploads and drawn pictures older than this many seconds, except files a running request "
        f"still reads (env TUMOR_AI_SWEEP_AGE; default {CACHE_SWEEP[1]}); the About tab states both",
    )
    parser.add_argument(
        "--queue-size", type=int, default=16, help="requests that may wait; more are told the app is busy (default 16)"
    )
    return parser.parse_args(argv)


def _seconds(text: str | int) -> int:
    """A positive whole number of seconds, or argparse's one-line error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} seconds: it must be at least 1")
    return value


def port_problem(host: str, port: int) -> str | None:
    """One sentence when the port cannot be bound (taken, or not ours to take), else None."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            return (
                f"Port {port} on {host} is not free ({error.strerror}): pass --port with another number, e.g. --port {port + 1}."
            )
    return None


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point).

    The page comes first: it is built from each model's metadata and not-an-MRI check (read without TensorFlow) and
    served, and only then does a thread import TensorFlow and load and trace the models (``tumor_ai.app.loading``); a
    request that comes before them waits, and the page says "Loading the models…". What cannot be served at all (no
    model folder, damaged metadata or check, no check without ``--allow-no-mri-check``, a busy port) stops the command in
    one sentence before the page; a model whose weights fail to load is one sentence on the page, which keeps serving.
    """
    args = parse_args(argv, prog)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    problem = port_problem(args.host, args.port)
    if problem:
        raise SystemExit(f"error: {problem}")
    from tumor_ai.app.workspace import open_workspace

    cache_sweep = (args.sweep_every, args.sweep_age)
    open_workspace(*cache_sweep)  # before Gradio is imported: every temporary file goes into the app's folder
    began = time.perf_counter()
    from tumor_ai.app.loading import StartupClock

    clock = StartupClock(STARTED)
    app, loader = page(args, clock, began)
    clock.timed("launch", lambda: launch(app, args, block=False))
    logging.getLogger("tumor_ai.app").info(
        "start-up: page served %.1f s after start (%s); the models load behind it",
        clock.mark("page served"),
        ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in clock.phases.items()),
    )
    loader.start()
    app.block_thread()


def page(args: argparse.Namespace, clock=None, began: float | None = None):
    """The app's page over the models ``args`` name, and the ``ModelLoader`` that will load them (not started): built
    from each model's files without TensorFlow. What cannot be served stops the command in one sentence."""
    began = time.perf_counter() if began is None else began
    from tumor_ai.app.loading import ModelLoader, StartupClock
    from tumor_ai.app.ui import build_app
    from tumor_ai.core.engine import resolve_engine
    from tumor_ai.core.inference import read_served_files
    from tumor_ai.core.precision import resolve_precision
    from tumor_ai.model.metadata import ModelSourceError
    from tumor_ai.model.sources import explicit_sources, local_fallbacks, model_sources

    clock = clock or StartupClock()
    clock.phase("page imports", time.perf_counter() - began)
    try:
        sources = model_sources(explicit_sources(args), args.models)
        files, read_from, fallback_reasons = clock.timed(
            "model files",  # metadata and not-an-MRI checks; a Hub source's download
            lambda: read_served_files(sources, local_fallbacks(args.models), require_mri_check=not args.allow_no_mri_check),
        )
    except ModelSourceError as error:
        raise SystemExit(f"error: {error}") from None
    try:
        engine = resolve_engine(args.engine, resolve_precision(args.precision))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    loader = ModelLoader(files, args.precision, clock=clock, engine=engine)
    cache_sweep = (args.sweep_every, args.sweep_age)
    brain = assistant_brain(args)
    app = clock.timed(
        "page build",
        lambda: build_app(loader.predictors, read_from, fallback_reasons, cache_sweep=cache_sweep, brain=brain, loading=loader),
    )
    app.queue(default_concurrency_limit=1, max_size=args.queue_size)
    # The page's own events keep their session state; they are API endpoints but not MCP tools (page_only).
    warnings.filterwarnings("ignore", message="This MCP server includes a tool that has a gr.State input")
    return app, loader


def launch(app, args: argparse.Namespace, block: bool = True) -> None:
    """Start serving ``app`` as ``args`` say, print where (and whether there is a public link) in the app's own words,
    then serve until stopped (``block``).

    Gradio's own start-up lines are off (``quiet``): offline, after the app's sentence that there is no public link,
    they would advise setting ``share=True`` in ``launch()``, which a person running a command cannot do. The page's
    preview tags are rewritten on its way out (``PreviewTags``), which needs the page rendered here, so not by Gradio's
    Node server (``ssr_mode=False``: the app does not use it).
    """
    from starlette.middleware import Middleware

    on_space = bool(os.environ.get("SPACE_ID"))
    reachable = bool(args.share) and not on_space and share_reachable()
    app.launch(
        server_name=args.host,
        server_port=args.port,
        share=reachable,
        max_file_size="100mb",
        footer_links=["api"],
        mcp_server=args.mcp,
        css=getattr(app, "page_css", None),
        quiet=True,
        prevent_thread_lock=True,
        ssr_mode=False,
        app_kwargs={"middleware": [Middleware(PreviewTags, preview=getattr(app, "share_preview", None))]},
    )
    from tumor_ai.core.wording import started

    if getattr(app, "mcp_error", None):
        print(app.mcp_error)
    for line in started(app.local_url.rstrip("/"), bool(args.share), app.share_url, reachable, on_space):
        print(line, flush=True)
    if block:
        app.block_thread()


class PreviewTags:
    """ASGI middleware: the page's HTML names tumor-ai in its preview tags (``og:``, ``twitter:``), not Gradio's
    "Gradio" / "Click to try out the app!". Link previews (chat apps, social sites) read the HTML without running its
    scripts, so the tags must be in the page as served; every other request passes through untouched."""

    def __init__(self, app, preview=None):
        self.app = app
        self.preview = preview

    async def __call__(self, scope, receive, send):
        if self.preview is None or scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in ("/", ""):
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body: list[bytes] = []

        async def rewritten(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            from starlette.datastructures import MutableHeaders
            from starlette.requests import Request

            headers = MutableHeaders(raw=start["headers"])
            content = b"".join(body)
            if headers.get("content-type", "").startswith("text/html") and "content-encoding" not in headers:
                content = preview_tags(content.decode(), self.preview, root_url(Request(scope))).encode()
                headers["content-length"] = str(len(content))
            await send(start)
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, receive, rewritten)


def root_url(request) -> str:
    """The page's public address as Gradio works it out (proxies and Spaces included), without a trailing slash."""
    from gradio.route_utils import get_root_url

    return get_root_url(request, route_path="/", root_path=request.scope.get("root_path") or None)


def preview_tags(html: str, preview, root: str) -> str:
    """``html`` with every ``og:`` and ``twitter:`` tag removed and the app's own written first in its head."""
    import html as markup
    import re

    html = re.sub(r"<meta\s[^>]*?(?:property|name)=\"(?:og|twitter):[^\"]*\"[^>]*>\s*", "", html)
    image = f"{root}/gradio_api/file={preview.image}" if preview.image else None
    tags = {
        "og:type": "website",
        "og:url": f"{root}/",
        "og:title": preview.title,
        "og:description": preview.description,
        "og:site_name": "tumor-ai",
    }
    if image:
        tags |= {"og:image": image, "og:image:type": "image/png", "og:image:width": "1200", "og:image:height": "630"}
        tags["og:image:alt"] = preview.image_alt
    cards = {"twitter:card": "summary_large_image" if image else "summary", "twitter:title": preview.title}
    cards["twitter:description"] = preview.description
    if image:
        cards |= {"twitter:image": image, "twitter:image:alt": preview.image_alt}
    written = "".join(f'\n\t\t<meta property="{key}" content="{markup.escape(value)}" />' for key, value in tags.items())
    written += "".join(f'\n\t\t<meta name="{key}" content="{markup.escape(value)}" />' for key, value in cards.items())
    head = re.search(r"<head[^>]*>", html)
    return html[: head.end()] + written + html[head.end() :] if head else html


def assistant_brain(args: argparse.Namespace):
    """The Assistant's brain: a language model when one is named, else the deterministic router."""
    from tumor_ai.app.assistant import LanguageModel, Router

    if not args.assistant_model:
        if args.assistant_base_url:
            raise SystemExit("error: --assistant-base-url needs --assistant-model (the model name that server serves)")
        return Router()
    logging.getLogger("tumor_ai.app").info("assistant: %s (%s)", args.assistant_model, args.assistant_base_url or "HF Inference")
    return LanguageModel(args.assistant_model, args.assistant_base_url, assistant_key(args))


# Hugging Face's own servers (and their subdomains: router.huggingface.co). Not *.hf.space or *.huggingface.cloud,
# whose code is anyone's: a Space or an Inference Endpoint gets a token only as its --assistant-api-key.
HUGGING_FACE_HOSTS = ("huggingface.co", "hf.co")


def assistant_key(args: argparse.Namespace) -> str | None:
    """The key the Assistant's language model is called with: its own (``--assistant-api-key``), else ``HF_TOKEN`` when
    the server is Hugging Face's (no base URL: the Inference Providers), else none. A Hugging Face token never goes to
    another company's server."""
    if args.assistant_api_key:
        return args.assistant_api_key
    if not args.assistant_base_url or is_hugging_face(args.assistant_base_url):
        return os.environ.get("HF_TOKEN")
    return None


def is_hugging_face(url: str) -> bool:
    """Whether ``url`` is one of Hugging Face's own servers over HTTPS (the Inference Providers' router)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and any(host == name or host.endswith("." + name) for name in HUGGING_FACE_HOSTS)


def share_reachable() -> bool:
    """Whether Gradio's share service answers (offline, ``launch`` says in one sentence that there is no public link)."""
    import httpx
    from gradio.networking import GRADIO_API_SERVER

    try:
        httpx.get(GRADIO_API_SERVER, timeout=5).raise_for_status()
        return True
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
