"""Training end to end on the synthetic dataset: learning, model folders, resume, refit, precision."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_dataset
from huggingface_hub import ModelCard

from training import engine
from training.train import main as train_main
from tumor_ai.model.folder import load_model

pytestmark = pytest.mark.slow  # it starts a server, a browser, a Hub or a build, trains, or runs the shipped models

CNN_SMALL = ["--model", "cnn", "--input-size", "48", "--batch-size", "8", "--warmup-epochs", "1"]


def _train(arguments: list[str], root, out, cache) -> None:
    train_main([*arguments, "--data", str(root), "--out", str(out), "--cache-dir", str(cache)])


def _history_rows(cache, out) -> dict[str, list[float]]:
    return engine.read_history(engine.run_directory(cache, out))


def test_cnn_learns_the_synthetic_classes_and_writes_a_complete_folder(tmp_path):
    # Enough images that batch-norm's moving statistics settle (momentum 0.99) within the run.
    root = tmp_path / "data"
    write_dataset(root, per_class=40, seed=1)
    out = tmp_path / "cnn"
    _train([*CNN_SMALL, "--epochs", "12", "--early-stopping-from", "8"], root, out, tmp_path / "c")
    for name in ("model.keras", "tumor_ai.json", "README.md", "split.json", "validation_report.json", "history.png"):
        assert (out / name).exists(), name
    model, metadata = load_model(out)
    calibration, bins = metadata.calibration, metadata.calibration.reliability
    assert (out / "reliability_diagram.png").exists(), "the validation split's reliability diagram"
    assert (bins.before.ece, bins.after.ece) == (calibration.ece_before, calibration.ece_after)
    assert sum(bins.after.counts) == metadata.dataset.validation_images
    assert metadata.dataset.validation_images + metadata.dataset.train_images == 4 * 43
    assert len(json.loads((out / "split.json").read_text())["validation"]) == metadata.dataset.validation_images
    assert metadata.crop == "head" and metadata.training.precision == engine.resolve_precision("auto")
    assert metadata.training.throughput.images_per_second > 0
    assert 8 < metadata.training.epochs_run["cnn"] <= 12, "early stopping may not end the run before it starts watching"
    # The planted blob's place says the class: a network that learns fits it well above chance (0.25).
    history = _history_rows(tmp_path / "c", out)
    assert history["loss"][-1] < 0.75 * history["loss"][0], history["loss"]
    assert history["accuracy"][-1] >= 0.6, history["accuracy"]
    assert metadata.metrics.validation.images == metadata.dataset.validation_images
    card = (out / "README.md").read_text()
    assert ModelCard(card).data.library_name == "keras" and "not a medical device" in card


VGG_SMALL = ["--model", "vgg16", "--input-size", "32", "--batch-size", "8", "--backbone-weights", "none", "--head-epochs", "2"]


def test_vgg16_split_run_then_refit_on_cached_features(dataset_dir, tmp_path):
    root, _ = dataset_dir
    split_run, refit, cache = tmp_path / "vgg16" / "split-run", tmp_path / "vgg16", tmp_path / "c"
    _train([*VGG_SMALL, "--epochs", "2", "--early-stopping-from", "5"], root, split_run, cache)
    _, metadata = load_model(split_run)
    assert set(metadata.training.epochs_run) == {"head", "fine-tune"} and metadata.crop == "none"
    assert metadata.training.stage_epochs["fine_tune"] == 2 and 1 <= metadata.training.stage_epochs["head"] <= 2
    flip = metadata.training.test_time_flip
    assert metadata.test_time_flip == flip.adopted and set(flip.to_dict()) >= {"with", "without"}
    features = sorted((cache / "features").glob("vgg16_*.npy"))
    assert len(features) == 3, "clean, mirrored and one augmented variant"
    assert len(list((cache / "features").glob("pooled_*.npy"))) == 1, "the head's inputs, cached for the next run"
    assert np.load(features[0], mmap_mode="r").shape == (metadata.dataset.images, 4, 4, 256)
    extraction = metadata.training.features
    # The split run computed the features (the card's test: at least half their time spent in this run).
    assert extraction.extraction_seconds > 0 and extraction.seconds_in_this_run >= extraction.extraction_seconds / 2
    card = (split_run / "README.md").read_text()
    assert "arXiv:1409.1556" in card and "CC BY 4.0" in card

    stamps = [path.stat().st_mtime_ns for path in features]
    train_main(["--refit", str(split_run), "--data", str(root), "--out", str(refit), "--cache-dir", str(cache)])
    _, refitted = load_model(refit)
    assert [path.stat().st_mtime_ns for path in features] == stamps, "the refit reuses the split run's features"
    assert refitted.training.refit.of == str(split_run)
    assert refitted.training.epochs_run["fine-tune"] == 2
    assert refitted.training.epochs_run["head"] == metadata.training.stage_epochs["head"]
    assert refitted.test_time_flip == metadata.test_time_flip and refitted.input_size == (32, 32)
    assert refitted.calibration == metadata.calibration and refitted.calibration.reliability is not None
    assert (refit / "reliability_diagram.png").read_bytes() == (split_run / "reliability_diagram.png").read_bytes()
    assert refitted.training.features.extraction_seconds == extraction.extraction_seconds, "timed when written"
    assert refitted.training.features.seconds_in_this_run < extraction.extraction_seconds / 2, "read, not computed"


def test_a_vgg16_head_alone_starts_from_a_split_run_and_keeps_its_blocks(dataset_dir, tmp_path, capsys):
    """``--start-from`` with ``--epochs 0`` retrains the head on the source's frozen blocks (their pooled output
    cached by the blocks' weights) and keeps the map the source is served with."""
    root, _ = dataset_dir
    source, head, cache = tmp_path / "source", tmp_path / "head", tmp_path / "c"
    _train([*VGG_SMALL, "--epochs", "1", "--early-stopping-from", "5"], root, source, cache)
    with pytest.raises(SystemExit):
        _train([*VGG_SMALL, "--epochs", "0"], root, head, cache)
    assert "needs --start-from" in capsys.readouterr().err
    _train([*VGG_SMALL, "--epochs", "0", "--head-learning-rate", "0.05", "--start-from", str(source)], root, head, cache)
    before, source_metadata = load_model(source)
    after, metadata = load_model(head)
    for layer in before.layers:
        if layer.name.startswith("block") and layer.weights:
            np.testing.assert_array_equal(layer.kernel.numpy(), after.get_layer(layer.name).kernel.numpy())
    assert not np.allclose(before.get_layer("predictions").kernel.numpy(), after.get_layer("predictions").kernel.numpy())
    assert metadata.training.stage_epochs == {"head": metadata.training.stage_epochs["head"], "fine_tune": 0}
    assert (metadata.cam_layer, metadata.cam_method) == (source_metadata.cam_layer, source_metadata.cam_method)
    assert metadata.training.started_from.of == str(source)
    assert len(list((cache / "features").glob("pooled_*.npy"))) == 2, "the source's blocks and the head run's: one each"


def test_feature_extraction_resumes_to_the_same_file(tmp_path):
    import keras

    from training.features import extract_variant
    from training.networks import build_vgg16

    model, _ = build_vgg16(["a", "b"], input_size=(32, 32), weights=None)
    extractor = keras.Model(model.input, model.get_layer("block3_pool").output)
    images = np.random.default_rng(0).integers(0, 255, (80, 32, 32, 3)).astype(np.uint8)
    whole = np.array(extract_variant(extractor, images, 2, 0, tmp_path / "whole.npy", "vgg16"))
    # An interrupted run: the first two batches written and counted, the rest of the file garbage.
    interrupted = np.lib.format.open_memmap(tmp_path / "resumed.npy", mode="w+", dtype=np.float16, shape=whole.shape)
    interrupted[:] = -1
    interrupted[:64] = whole[:64]
    interrupted.flush()
    (tmp_path / "resumed.progress").write_text("64")
    resumed = np.array(extract_variant(extractor, images, 2, 0, tmp_path / "resumed.npy", "vgg16"))
    assert (resumed[64:] != -1).all(), "the missing rows were computed"
    # The augmentation's random draws for the written batches are replayed, so row 64 on matches.
    np.testing.assert_allclose(resumed.astype(np.float32), whole.astype(np.float32), atol=1e-2)


def test_resume_continues_where_it_stopped(dataset_dir, tmp_path):
    root, _ = dataset_dir
    arguments = [*CNN_SMALL, "--epochs", "3", "--precision", "float32", "--early-stopping-from", "5"]
    whole = tmp_path / "whole"
    _train(arguments, root, whole, tmp_path / "c1")
    interrupted = tmp_path / "interrupted"
    _train([*arguments, "--stop-after-epochs", "2"], root, interrupted, tmp_path / "c2")
    assert len(_history_rows(tmp_path / "c2", interrupted)["loss"]) == 2
    _train([*arguments, "--resume"], root, interrupted, tmp_path / "c2")
    resumed = _history_rows(tmp_path / "c2", interrupted)
    uninterrupted = _history_rows(tmp_path / "c1", whole)
    assert len(resumed["loss"]) == 3, "the resumed run trains only the epoch it missed"
    # Same weights, optimizer, epoch, order and augmentation: the third epoch is the same epoch.
    np.testing.assert_allclose(resumed["loss"], uninterrupted["loss"], rtol=1e-3)
    a, _ = load_model(whole)
    b, _ = load_model(interrupted)
    for left, right in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(left, right, atol=1e-3)


def test_a_new_run_does_not_resume_a_stale_backup(dataset_dir, tmp_path):
    root, _ = dataset_dir
    out = tmp_path / "m"
    arguments = [*CNN_SMALL, "--epochs", "2", "--early-stopping-from", "5"]
    _train([*arguments, "--stop-after-epochs", "1"], root, out, tmp_path / "c")
    _train(arguments, root, out, tmp_path / "c")
    assert len(_history_rows(tmp_path / "c", out)["loss"]) == 2
    _, metadata = load_model(out)
    assert metadata.training.epochs_run["cnn"] == 2


def test_refit_trains_on_everything_and_carries_the_split_runs_estimate(dataset_dir, tmp_path):
    root, _ = dataset_dir
    split_run = tmp_path / "split"
    _train([*CNN_SMALL, "--epochs", "3", "--early-stopping-from", "1"], root, split_run, tmp_path / "c")
    _, split_metadata = load_model(split_run)
    refit = tmp_path / "refit"
    train_main(["--data", str(root), "--out", str(refit), "--cache-dir", str(tmp_path / "c"), "--refit", str(split_run)])
    _, metadata = load_model(refit)
    assert metadata.training.refit.epochs == split_metadata.training.chosen_epochs
    assert metadata.training.epochs_run["cnn"] == split_metadata.training.chosen_epochs
    assert metadata.dataset.train_images == 60 and metadata.dataset.validation_images == 0
    assert metadata.metrics == split_metadata.metrics
    assert metadata.calibration == split_metadata.calibration
    assert metadata.training.arguments["learning_rate"] == split_metadata.training.arguments["learning_rate"]
    assert (refit / "split.json").read_text() == (split_run / "split.json").read_text()
    card = (refit / "README.md").read_text()
    assert "These weights are a refit" in card and "the metrics below are the split run's" in card
    from training.evaluate import main as evaluate_main

    with pytest.raises(SystemExit, match="score the split run instead"):
        evaluate_main(["--model", str(refit), "--data", str(root), "--subset", "validation", "--out", str(tmp_path / "r.json")])


def test_refit_needs_a_split_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--refit", str(tmp_path / "nothing")])
    assert "run the split run first" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "cpuinfo", "policy"),
    [
        ("auto", "flags : fpu avx512f avx512_bf16 avx2", "mixed_bfloat16"),
        ("auto", "flags : fpu amx_bf16 amx_tile", "mixed_bfloat16"),
        ("auto", "flags : fpu avx512f avx2", "float32"),
        ("float32", "flags : avx512_bf16", "float32"),
        ("bfloat16", "flags : avx2", "mixed_bfloat16"),
    ],
)
def test_precision_flag(flag, cpuinfo, policy):
    assert engine.resolve_precision(flag, cpuinfo) == policy


def test_precision_is_recorded_and_the_saved_model_is_float32(dataset_dir, tmp_path):
    root, _ = dataset_dir
    out = tmp_path / "bf16"
    _train([*CNN_SMALL, "--epochs", "1", "--precision", "bfloat16"], root, out, tmp_path / "c")
    model, metadata = load_model(out)
    assert metadata.training.precision == "mixed_bfloat16"
    assert {layer.compute_dtype for layer in model.layers if layer.weights} == {"float32"}


def test_label_smoothed_loss_matches_keras():
    import keras

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4), size=16).astype("float32")
    targets = rng.integers(0, 4, 16)
    plain = engine.sparse_crossentropy(0.0)(targets, probabilities)
    expected = keras.losses.sparse_categorical_crossentropy(targets, probabilities)
    np.testing.assert_allclose(np.asarray(plain), np.asarray(expected), rtol=1e-5)
    smoothed = engine.sparse_crossentropy(0.1)(targets, probabilities)
    reference = keras.losses.categorical_crossentropy(np.eye(4)[targets], probabilities, label_smoothing=0.1)
    np.testing.assert_allclose(np.asarray(smoothed), np.asarray(reference), rtol=1e-5)


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    text = capsys.readouterr().out
    for phrase in ("--refit", "--resume", "--precision", "--crop", "python -m training.train --model cnn"):
        assert phrase in text


def test_a_fine_tune_starts_from_its_split_run_and_says_so(dataset_dir, tmp_path):
    """``--start-from`` copies the source's weights (a rate of ~0 leaves its kernels as they were), records the
    source and its command, and the card copies the source where the fine-tune reads it before its command."""
    root, _ = dataset_dir
    source, tuned = tmp_path / "source", tmp_path / "tuned"
    _train([*CNN_SMALL, "--epochs", "2", "--early-stopping-from", "5"], root, source, tmp_path / "c")
    _train([*CNN_SMALL, "--epochs", "1", "--learning-rate", "1e-12", "--start-from", str(source)], root, tuned, tmp_path / "c")
    before, source_metadata = load_model(source)
    after, metadata = load_model(tuned)
    kernels = [layer.kernel.numpy() for layer in before.layers if hasattr(layer, "kernel")]
    copied = [layer.kernel.numpy() for layer in after.layers if hasattr(layer, "kernel")]
    for left, right in zip(kernels, copied):
        np.testing.assert_allclose(left, right, atol=1e-6)
    started = metadata.training.started_from
    assert started.of == str(source) and started.command == source_metadata.training.command
    assert started.out == str(source) and "same validation images" in started.held_out
    card = (tuned / "README.md").read_text()
    assert card.index(source_metadata.training.command) < card.index(metadata.training.command)


def test_a_fine_tune_refuses_a_source_that_saw_its_validation_images(dataset_dir, tmp_path, capsys):
    root, _ = dataset_dir
    source = tmp_path / "source"
    _train([*CNN_SMALL, "--epochs", "1", "--early-stopping-from", "5"], root, source, tmp_path / "c")
    with pytest.raises(SystemExit, match="held out other images"):
        _train([*CNN_SMALL, "--epochs", "1", "--seed", "3", "--start-from", str(source)], root, tmp_path / "t", tmp_path / "c")
    with pytest.raises(SystemExit, match="another network"):
        _train(
            [*CNN_SMALL, "--epochs", "1", "--input-size", "40", "--start-from", str(source)], root, tmp_path / "t", tmp_path / "c"
        )
