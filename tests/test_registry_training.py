"""A third architecture trains, is served beside the other two and is compared (slow: it trains)."""

from __future__ import annotations

import pytest
from test_registry import tiny_architecture as registered_tiny  # the fixture: the tiny network registered

pytestmark = pytest.mark.slow


tiny_architecture = registered_tiny


def test_a_third_architecture_trains_serves_and_is_compared_with_the_other_two(
    tiny_architecture, dataset_dir, slot_models, example_paths, tmp_path
):
    from training.train import main as train_main
    from tumor_ai.app.serve import parse_args as serve_args
    from tumor_ai.core.inference import load_predictors
    from tumor_ai.model.folder import load_model
    from tumor_ai.model.sources import explicit_sources, model_sources

    root, _ = dataset_dir
    out = tmp_path / "tiny"
    train_main(["--model", "tiny", "--data", str(root), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--width", "6"])
    model, metadata = load_model(out)
    assert metadata.architecture == "tiny"
    assert model.get_layer("tiny_conv").filters == 6, "the recipe's own field reached the builder"
    assert metadata.training.arguments["width"] == 6 and metadata.metrics.validation.images > 0
    card = (out / "README.md").read_text()
    assert "Tiny test network" in card and "base_model" not in card

    args = serve_args(["--cnn", str(slot_models["cnn"]), "--vgg16", str(slot_models["vgg16"]), "--tiny", str(out)])
    sources = model_sources(explicit_sources(args))
    assert list(sources) == ["cnn", "vgg16", "tiny"]
    predictors, _, _ = load_predictors(sources, precision="float32", require_mri_check=False)
    assert predictors["tiny"].labels == predictors["cnn"].labels

    from tumor_ai.app.handlers import compare
    from tumor_ai.app.ui import build_app

    app = build_app(predictors)
    labels = [component.get("props", {}).get("label") for component in app.config["components"]]
    assert "Tiny test network (tiny): confidence" in labels, "the third model has its own Compare column"
    result = compare(predictors, str(example_paths["glioma"]), 0.4, None)
    assert list(result.models) == ["cnn", "vgg16", "tiny"] and all(column.overlay for column in result.models.values())
    assert result.summary.startswith(("**All three", "**The models disagree")) and "| tiny |" in result.summary
