"""The floor: a bare Gradio app with the real app's inputs and outputs and no work behind them.

    python benchmarks/floor_app.py --port 7861

``/predict`` takes the same image, model, opacity and class as the real one and returns a
fixed label, the upload itself as both pictures, a fixed reading and fixed JSON; ``/compare``
likewise. Timing it through ``gradio_client`` in the same run as the real app
(``benchmarks/e2e_latency.py``) separates what Gradio and the network cost from what the app's
handlers add.
"""

from __future__ import annotations

import argparse

import gradio as gr

LABEL = {"Glioma": 0.7, "Meningioma": 0.1, "No tumour": 0.1, "Pituitary tumour": 0.1}


def predict(image, model, opacity, evidence):
    path = image["path"] if isinstance(image, dict) else image
    return LABEL, path, path, "reads this slice as Glioma", {"model": model, "label": "glioma"}


def compare(image, opacity):
    path = image["path"] if isinstance(image, dict) else image
    return LABEL, path, LABEL, path, "Both models read Glioma"


def build() -> gr.Blocks:
    with gr.Blocks(analytics_enabled=False) as app:
        image = gr.Image(type="filepath")
        model, opacity, evidence = gr.Radio(["cnn", "vgg16"]), gr.Slider(0, 1), gr.Radio(["top"])
        outputs = [gr.Label(), gr.Image(type="numpy"), gr.Image(type="numpy"), gr.Markdown(), gr.JSON()]
        gr.Button().click(predict, [image, model, opacity, evidence], outputs, api_name="predict", preprocess=False)
        compared = [gr.Label(), gr.Image(type="numpy"), gr.Label(), gr.Image(type="numpy"), gr.Markdown()]
        gr.Button().click(compare, [image, opacity], compared, api_name="compare", preprocess=False)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=7861)
    args = parser.parse_args()
    app = build()
    app.queue(default_concurrency_limit=1)
    app.launch(server_name="127.0.0.1", server_port=args.port, quiet=True)
