"""``tumor-ai tune``: a real Optuna study in a SQLite file, continued, pruned and reported.

The fast tests replace the trainer (``trials=``) with one that reports made-up epochs and scores, so
the study's machinery (storage, resume, pruning, constraints, the report) is what is tested; the slow
test trains two real trials on synthetic data end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from training.tune import TARGETS, TrialScore, main, parse_args, trial_folder


class MadeUpTrials:
    """Each trial reports four epochs; the first trial learns, the later ones do not (so they are pruned)."""

    def __init__(self) -> None:
        self.calls = 0

    def train(self, folder: Path, flags: list[str], on_epoch) -> None:
        self.calls += 1
        learns = self.calls == 1
        for epoch in range(4):
            if on_epoch(epoch, 0.5 + 0.1 * epoch if learns else 0.1):
                return  # pruned: no model folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tumor_ai.json").write_text("{}")

    def score(self, folder: Path) -> TrialScore:
        return TrialScore(
            macro_f1=0.9, accuracy=0.91, pointing_game=0.9, tumour_kept=0.1, control_kept=0.99,
            held_out_tumour_kept={"nearest": 0.1}, held_out_control_kept={"nearest": 0.98},
            other_collection=0.96, train_seconds=1.0,
        )  # fmt: skip


def _argv(tmp_path: Path, trials: int) -> list[str]:
    return ["--data", "d", "--masks", "m", "--partial", "p", "--trials", str(trials), "--out", str(tmp_path / "report"),
            "--startup-trials", "1", "--work", str(tmp_path / "work")]  # fmt: skip


def test_a_study_is_stored_continued_pruned_and_reported(tmp_path):
    made_up = MadeUpTrials()
    main(_argv(tmp_path, 1), trials=made_up)
    database = tmp_path / "report" / "study.db"
    assert database.exists(), "the default storage is a SQLite file beside the report"
    main(_argv(tmp_path, 2), trials=made_up)  # a second run continues the same study
    study = optuna.load_study(study_name="cnn-recipe", storage=f"sqlite:///{database}")
    states = [trial.state for trial in study.trials]
    assert len(states) == 3
    assert states[0] == optuna.trial.TrialState.COMPLETE
    assert optuna.trial.TrialState.PRUNED in states[1:], "a trial below the median after the warm-up epochs is stopped"
    pruned = next(t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
    assert max(pruned.intermediate_values) == 2, "pruned at the first epoch past the warm-up"
    assert study.trials[0].user_attrs["constraints"] == pytest.approx(TARGETS.violations(made_up.score(tmp_path)))
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["trials"] == 3 and report["best"]["number"] == 0 and report["best"]["feasible"]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| 0 | complete | 0.9000 |" in text and "| pruned |" in text
    assert (tmp_path / "report" / "front.png").stat().st_size > 1000


def test_an_infeasible_trial_is_reported_as_the_closest_not_the_best(tmp_path):
    class Weak(MadeUpTrials):
        def score(self, folder: Path) -> TrialScore:
            found = super().score(folder)
            found.other_collection = 0.5  # misses the other-collection target
            return found

    main(_argv(tmp_path, 1), trials=Weak())
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["best"]["feasible"] is False
    assert "no trial meets every target" in (tmp_path / "report" / "report.md").read_text()


def test_a_recipe_keeps_its_folder_so_a_retried_trial_continues_its_run(tmp_path):
    assert trial_folder(tmp_path, ["--guidance", "1"]) == trial_folder(tmp_path, ["--guidance", "1"])
    assert trial_folder(tmp_path, ["--guidance", "1"]) != trial_folder(tmp_path, ["--guidance", "2"])


def test_storage_can_be_a_journal_file_for_many_machines(tmp_path):
    argv = [*_argv(tmp_path, 1), "--storage", f"journal:{tmp_path / 'study.log'}"]
    main(argv, trials=MadeUpTrials())
    assert (tmp_path / "study.log").stat().st_size > 0
    args = parse_args(["--data", "d", "--masks", "m", "--partial", "p"])
    assert args.storage == "sqlite:///docs/reports/tune/cnn/study.db" and args.proxy[0] == "--input-size"


def test_a_finetune_study_continues_a_trained_cnn_at_its_own_size(tmp_path, monkeypatch):
    import subprocess

    from training import tune

    with pytest.raises(SystemExit):
        parse_args(["--model", "cnn-finetune", "--data", "d", "--masks", "m", "--partial", "p"])
    args = parse_args(["--model", "cnn-finetune", "--start-from", "models/cnn", "--data", "d", "--masks", "m",
                       "--partial", "p", "--work", str(tmp_path), "--cache-dir", str(tmp_path),
                       "--poll-seconds", "0"])  # fmt: skip
    assert args.proxy[:4] == ["--start-from", "models/cnn", "--input-size", "256"] and "--epochs" in args.proxy
    assert args.out == "docs/reports/tune/cnn-finetune"
    launched = []

    class Finished:
        returncode = 0

        def __init__(self, command, **_):
            launched.append(command)

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Finished)
    tune.SubprocessTrials(args).train(tmp_path / "trial", ["--guidance", "1"], lambda epoch, accuracy: False)
    command = launched[0]
    assert command[command.index("--model") + 1] == "cnn", "the trial trains the CNN architecture"


@pytest.mark.slow
def test_a_study_is_recorded_in_the_model_folder_it_tuned(tmp_path):
    """``--record-in FOLDER`` writes the chosen trial's figures into the folder's metadata, its plot beside it and a
    row into its card; the recorded command is the study's, without the recording flags."""
    import shutil

    from tumor_ai.model.metadata import ModelMetadata
    from tumor_ai.publish.card import study_row

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(Path(__file__).parents[1] / "models" / "cnn" / "tumor_ai.json", folder / "tumor_ai.json")
    main(_argv(tmp_path, 1), trials=MadeUpTrials())
    main([*_argv(tmp_path, 1), "--report-only", "--record-in", str(folder)])
    record = ModelMetadata.read(folder / "tumor_ai.json").studies["cnn-recipe"]
    assert (record.chosen, record.trials, record.feasible, record.adopted) == (0, 1, True, False)
    assert record.score["macro_f1"] == 0.9 and "train_seconds" not in record.score
    assert "--record-in" not in record.command and "--report-only" not in record.command
    assert record.command.startswith("tumor-ai tune --data d ")
    assert (folder / "study_cnn-recipe.png").stat().st_size > 1000
    card = (folder / "README.md").read_text()
    assert "## Tuning studies" in card and study_row("cnn-recipe", record) in card
    assert "![the cnn-recipe study's trials](study_cnn-recipe.png)" in card


def test_adopted_needs_a_model_folder_to_record_in(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args([*_argv(tmp_path, 1), "--adopted"])
    assert "--record-in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args([*_argv(tmp_path, 1), "--record-in", str(tmp_path)])
    assert "no tumor_ai.json there" in capsys.readouterr().err


def test_two_real_trials_on_synthetic_data(tmp_path):
    """Two trials trained and scored for real (tiny network, two epochs): the study, the scores and the report."""
    from conftest import write_dataset
    from test_counterfactual_runs import _masks_for
    from test_partial import write_partial

    data, masks, partial = tmp_path / "data", tmp_path / "masks", tmp_path / "br35h"
    write_dataset(data, per_class=12, seed=2)
    _masks_for(data, masks)
    write_partial(partial, slices=8)
    proxy = "--input-size 48 --batch-size 8 --epochs 2 --warmup-epochs 0.2 --early-stopping-from 5"
    main(["--data", str(data), "--masks", str(masks), "--partial", str(partial), "--trials", "2", "--proxy", proxy,
          "--out", str(tmp_path / "report"), "--work", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"),
          "--limit", "20", "--poll-seconds", "1"])  # fmt: skip
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["trials"] == 2
    scored = [row for row in report["rows"] if row["score"]]
    assert scored, report["rows"]
    for row in scored:
        assert 0.0 <= row["score"]["macro_f1"] <= 1.0
        assert set(row["score"]["held_out_control_kept"]) == {"nearest", "blur"}
        assert "--guidance" in row["flags"] and "--input-size 48" in row["flags"]


@pytest.mark.slow
def test_a_vgg16_head_study_reads_cached_maps_of_a_split_run(tmp_path):
    """Heads trained for real on a tiny VGG16 split run's frozen blocks: every trial scored from the cached maps
    (the reasons with the training and held-out fills, the other collection), the pointing game the source's."""
    from conftest import write_dataset
    from test_counterfactual_runs import _masks_for
    from test_partial import write_partial

    from training.localise import HELD_OUT_FILLS
    from training.train import main as train_main
    from tumor_ai.model.folder import load_model

    data, masks, partial, cache = tmp_path / "data", tmp_path / "masks", tmp_path / "br35h", tmp_path / "cache"
    write_dataset(data, per_class=12, seed=2)
    _masks_for(data, masks)
    write_partial(partial, slices=8)
    source = tmp_path / "vgg16"
    train_main(["--model", "vgg16", "--input-size", "32", "--batch-size", "8", "--backbone-weights", "none",
                "--head-epochs", "1", "--epochs", "1", "--data", str(data), "--out", str(source),
                "--cache-dir", str(cache)])  # fmt: skip
    with pytest.raises(SystemExit):
        main(["--model", "vgg16-head", "--data", str(data), "--masks", str(masks), "--partial", str(partial)])
    main(["--model", "vgg16-head", "--start-from", str(source), "--backbone-weights", "none", "--data", str(data),
          "--masks", str(masks), "--partial", str(partial), "--trials", "2", "--out", str(tmp_path / "report"),
          "--work", str(tmp_path / "work"), "--cache-dir", str(cache), "--limit", "20"])  # fmt: skip
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    scored = [row for row in report["rows"] if row["score"]]
    assert len(scored) == 2, report["rows"]
    _, metadata = load_model(source)
    for row in scored:
        score = row["score"]
        assert 0.0 <= score["macro_f1"] <= 1.0 and 0.0 <= score["other_collection"] <= 1.0
        assert set(score["held_out_tumour_kept"]) == set(HELD_OUT_FILLS)
        assert "--epochs 0" in row["flags"] and "--head-learning-rate" in row["flags"]
    assert len(list((cache / "tune" / "vgg16-head").glob("reasons_*.npz"))) == 1, "the hidden-region maps, computed once"
    assert report["source"]["train_seconds"] == 0.0, "the source's own head is the study's baseline"
    assert "| source | its own head |" in (tmp_path / "report" / "report.md").read_text()
