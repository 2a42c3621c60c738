"""Tune a registered architecture's recipe with Optuna: accuracy, under the targets for the reasons and the other collection.

    tumor-ai tune --model cnn --data ../shared/data/brain-tumor-mri/Training \\
        --masks ../shared/data/brain-tumor-mri/masks/Training --partial ../shared/data/br35h --trials 4

Each trial draws a recipe from the architecture's search space (``SEARCH_SPACES``), trains it as a
short proxy run (``--proxy``: small input, few epochs) with ``training.train`` in a process of its
own, and scores it on data it never trained on:

- accuracy: validation macro-F1 on the group-aware split (the objective, maximised);
- reasons: the served map's pointing game, the tumour class kept with the tumour erased, and the
  answer kept with a same-size region erased elsewhere, by the training fill and by fills no recipe
  trains on (``training.localise.HELD_OUT_FILLS``), on up to ``--limit`` validation outlines;
- the other collection: sensitivity on the partial folder's held-out slice groups (per slice).

``--model cnn-finetune --start-from models/cnn`` studies the recipe as a continuation of a trained CNN
instead: each trial is one full-size epoch from the source's weights (the run one would ship, not a
proxy of it), so the proxy question does not arise; one-epoch trials are never pruned.

Why one objective under constraints rather than a Pareto front: the targets of the reasons and of
the other collection are thresholds (``TARGETS``), and accuracy is what to maximise among recipes
that meet them; TPE takes the thresholds as constraints (``constraints_func``), and a one-objective
study can prune a hopeless trial by its validation accuracy after each epoch (``MedianPruner``),
which Optuna cannot do for several objectives. The report shows every trial's reasons beside its
accuracy, so the trade-off stays visible.

Storage and scale: ``--storage`` is any Optuna RDB URL (a SQLite file by default, beside the report,
to be committed so that the next run of the study continues it; PostgreSQL or MySQL let many machines
work on one study) or ``journal:PATH`` (Optuna's journal file storage, for a shared file system). A
trial whose process died is failed after its heartbeat stops and retried with the same recipe, whose
training continues from its last epoch (``--resume``). Run the same command on more machines to add
workers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

# The proxy run: the shipped CNN recipe small and short (training.probe's, whose arms these extend).
PROXY = ["--input-size", "128", "--epochs", "6", "--warmup-epochs", "1", "--early-stopping-from", "6", "--guidance-ramp", "1",
         "--acquisition"]  # fmt: skip
PROXY_SIDE = 128
FULL_SIDE = 256  # the erase growth is drawn in full-size pixels and scaled to the proxy's side
HEARTBEAT_SECONDS = 60


@dataclass(frozen=True)
class Targets:
    """The issue's targets, as constraints: a trial is feasible when it meets every one."""

    pointing_game: float = 0.85
    tumour_kept: float = 0.20
    control_kept: float = 0.97
    other_collection: float = 0.95

    def violations(self, score: TrialScore) -> list[float]:
        """Optuna's constraint values: at most 0 where the target is met (the size of the miss otherwise)."""
        return [
            self.pointing_game - score.pointing_game,
            max([score.tumour_kept, *score.held_out_tumour_kept.values()]) - self.tumour_kept,
            self.control_kept - min([score.control_kept, *score.held_out_control_kept.values()]),
            self.other_collection - score.other_collection,
        ]


TARGETS = Targets()


@dataclass
class TrialScore:
    """What one trained recipe scored on its held-out data."""

    macro_f1: float
    accuracy: float
    pointing_game: float
    tumour_kept: float
    control_kept: float
    held_out_tumour_kept: dict[str, float]
    held_out_control_kept: dict[str, float]
    other_collection: float
    train_seconds: float


def cnn_space(trial) -> list[str]:
    """The CNN's recipe flags for one trial: what the last runs and the probe suggest may matter."""
    # Outline growth in full-size px, a few values so that each one's erased copies are made once and cached.
    grow_max = trial.suggest_categorical("erase_grow_max", [2, 4, 8])
    glioma_factor = trial.suggest_categorical("glioma_grow_factor", [1, 2])  # glioma outlines often miss the oedema
    scale = PROXY_SIDE / FULL_SIDE
    return [
        "--learning-rate", f"{trial.suggest_float('learning_rate', 1e-3, 4e-3, log=True):.6g}",
        "--label-smoothing", f"{trial.suggest_float('label_smoothing', 0.0, 0.15):.4g}",
        "--guidance", f"{trial.suggest_float('guidance', 0.25, 2.0, log=True):.4g}",
        "--guidance-from", str(trial.suggest_int("guidance_from", 1, 3)),
        "--erase", f"{trial.suggest_float('erase', 0.1, 0.4):.3g}",
        "--control", f"{trial.suggest_float('control', 0.1, 0.4):.3g}",
        "--erase-grow", "1", str(max(1, round(grow_max * scale))),
        "--erase-grow-class", f"glioma=1:{max(1, round(grow_max * glioma_factor * scale))}",
        "--partial-repeat", str(trial.suggest_int("partial_repeat", 1, 3)),
        "--sequence", f"{trial.suggest_float('sequence', 0.0, 0.15):.3g}",
        # an erased glioma often keeps its oedema: "no tumour" may be too hard a target, "not glioma" is safe
        "--erased-label", trial.suggest_categorical("erased_label", ["notumor", "not-class"]),
    ]  # fmt: skip


def cnn_finetune_space(trial) -> list[str]:
    """The CNN's recipe as a continuation of a trained CNN (``--model cnn-finetune``, ``--start-from``).

    A trial is the run itself at full size, one epoch from the source's weights, not a small proxy of it,
    so its scores need no rank correlation with full runs: the winning trial's folder is the candidate.
    """
    return [
        "--learning-rate", f"{trial.suggest_float('learning_rate', 1e-4, 1e-3, log=True):.6g}",
        "--label-smoothing", f"{trial.suggest_float('label_smoothing', 0.0, 0.15):.4g}",
        "--guidance", f"{trial.suggest_float('guidance', 0.25, 2.0, log=True):.4g}",
        "--erase", f"{trial.suggest_float('erase', 0.1, 0.4):.3g}",
        "--control", f"{trial.suggest_float('control', 0.1, 0.4):.3g}",
        "--erase-grow", "1", "4",
        # two outline growths for gliomas only (each bank of erased copies is made once and cached)
        "--erase-grow-class", f"glioma={trial.suggest_categorical('glioma_grow', ['1:4', '4:12'])}",
        "--partial-repeat", str(trial.suggest_int("partial_repeat", 1, 3)),
        "--sequence", f"{trial.suggest_float('sequence', 0.0, 0.3):.3g}",
        "--erased-label", trial.suggest_categorical("erased_label", ["notumor", "not-class"]),
    ]  # fmt: skip


def vgg16_head_space(trial) -> list[str]:
    """The VGG16 head's flags (``--model vgg16-head``: blocks frozen, training.tune_head): its stage-1 schedule and
    how much the other collection's partial labels weigh."""
    return [
        "--head-learning-rate", f"{trial.suggest_float('head_learning_rate', 1e-4, 3e-3, log=True):.6g}",
        "--label-smoothing", f"{trial.suggest_float('label_smoothing', 0.0, 0.15):.4g}",
        "--head-epochs", str(trial.suggest_int("head_epochs", 4, 30)),
        "--patience", str(trial.suggest_int("patience", 2, 6)),
        "--partial-repeat", str(trial.suggest_int("partial_repeat", 1, 6)),
        "--batch-size", str(trial.suggest_categorical("batch_size", [32, 64])),
    ]  # fmt: skip


SEARCH_SPACES: dict[str, Callable] = {"cnn": cnn_space, "cnn-finetune": cnn_finetune_space, "vgg16-head": vgg16_head_space}
ARCHITECTURE = {"cnn": "cnn", "cnn-finetune": "cnn", "vgg16-head": "vgg16"}  # what training.train builds
# The shipped recipe (plus the partial labels the probe found worth most), tried first as the study's reference.
REFERENCE = {
    "cnn": {"learning_rate": 2e-3, "label_smoothing": 0.1, "guidance": 1.0, "guidance_from": 2, "erase": 0.2,
            "control": 0.2, "erase_grow_max": 4, "glioma_grow_factor": 1, "partial_repeat": 1, "sequence": 0.0,
            "erased_label": "notumor"},
    # the shipped CNN's own recipe, continued for the trial's epoch
    "cnn-finetune": {"learning_rate": 5e-4, "label_smoothing": 0.1, "guidance": 1.0, "erase": 0.2, "control": 0.2,
                     "glioma_grow": "1:4", "partial_repeat": 2, "sequence": 0.2, "erased_label": "notumor"},
    "vgg16-head": {"head_learning_rate": 1e-3, "label_smoothing": 0.1, "head_epochs": 20, "patience": 3,
                   "partial_repeat": 1, "batch_size": 32},
}  # fmt: skip
FINISHED = ("tumor_ai.json", "score.json")  # what a finished trial leaves: a run's model folder, or a head trial's score


def trial_folder(work: Path, flags: list[str]) -> Path:
    """One folder per recipe, so that a retried trial (same recipe) continues the same run."""
    return work / hashlib.sha1(" ".join(flags).encode()).hexdigest()[:12]


class SubprocessTrials:
    """Trains a trial with ``training.train`` in its own process and scores it (``--limit`` outlines)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def train(self, folder: Path, flags: list[str], on_epoch: Callable[[int, float], bool]) -> None:
        """Train into ``folder``; ``on_epoch(epoch, val_accuracy)`` returning True stops (prunes) the run."""
        from .engine import run_directory

        backup = run_directory(self.args.cache_dir, folder)
        command = [sys.executable, "-m", "training.train", "--model", ARCHITECTURE[self.args.model], *flags,
                   "--data", self.args.data, "--masks", self.args.masks, "--partial", self.args.partial, "--out", str(folder),
                   "--cache-dir", self.args.cache_dir]  # fmt: skip
        if (backup / "history.csv").exists():
            command.append("--resume")
        log = folder.parent / f"{folder.name}.log"  # a file, not a pipe: tqdm's bars would fill a pipe and stall the run
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as stream:
            process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
            pruned = self._follow(process, backup, on_epoch)
        if not pruned and process.returncode != 0:
            raise RuntimeError(f"training failed ({process.returncode}); its log: {log}\n{log.read_text()[-800:]}")

    def _follow(self, process: subprocess.Popen, backup: Path, on_epoch: Callable[[int, float], bool]) -> bool:
        """Report each new epoch of the run's log; stop the process (and say so) when the study prunes the trial."""
        from .engine import read_history

        seen = 0
        while True:
            finished = process.poll() is not None
            accuracy = read_history(backup).get("val_accuracy", []) if (backup / "history.csv").exists() else []
            for epoch in range(seen, len(accuracy)):
                if on_epoch(epoch, accuracy[epoch]):
                    process.terminate()
                    process.wait()
                    return True
            seen = len(accuracy)
            if finished:
                return False
            time.sleep(self.args.poll_seconds)

    def score(self, folder: Path) -> TrialScore:
        from tumor_ai.model.metadata import ModelMetadata

        from .localise import main as localise_main

        metadata = ModelMetadata.read(folder / "tumor_ai.json")
        report_path = folder / "localise.json"
        if not report_path.exists():
            localise_main(["--model", str(folder), "--data", self.args.data, "--masks", self.args.masks,
                           "--methods", metadata.cam_method, "--layers", metadata.cam_layer, "--deletion-images", "0",
                           "--limit", str(self.args.limit), "--out", str(report_path)])  # fmt: skip
        return score_from(metadata, json.loads(report_path.read_text()))


def _held_out_sensitivity(partial) -> float:
    """The share of held-out tumour slices of unknown type the run's model called a tumour (0 without them)."""
    return float(((partial.validation if partial else None) or {}).get("sensitivity", 0.0))


def score_from(metadata, report: dict) -> TrialScore:
    """A trial's score from its metadata (accuracy, the other collection) and its localise report (the reasons)."""
    served = report["maps"][f"{metadata.cam_method}@{metadata.cam_layer}"]
    erased = report["erased"]
    held = erased.get("held_out_fills", {})
    validation = metadata.metrics.validation
    return TrialScore(
        macro_f1=validation.macro_f1,
        accuracy=validation.accuracy,
        pointing_game=served["pointing_game"]["value"],
        tumour_kept=erased["tumour_kept"]["value"],
        control_kept=erased["control_kept"]["value"],
        held_out_tumour_kept={style: found["tumour_kept"]["value"] for style, found in held.items()},
        held_out_control_kept={style: found["control_kept"]["value"] for style, found in held.items()},
        other_collection=_held_out_sensitivity(metadata.training.partial),
        train_seconds=float(metadata.training.seconds or 0.0),
    )


def objective_for(args: argparse.Namespace, trials) -> Callable:
    """The study's objective: train the trial's recipe (pruned by epoch), score it, keep the reasons as constraints."""
    import optuna

    def objective(trial: optuna.Trial) -> float:
        flags = [*args.proxy, *SEARCH_SPACES[args.model](trial)]
        folder = trial_folder(Path(args.work), flags)
        trial.set_user_attr("flags", " ".join(flags))
        trial.set_user_attr("cpu", cpu_name())

        def on_epoch(epoch: int, accuracy: float) -> bool:
            trial.report(accuracy, epoch)
            return trial.should_prune()

        trials.train(folder, flags, on_epoch)
        if not any((folder / name).exists() for name in FINISHED):
            trial.set_user_attr("constraints", [1.0] * len(asdict(TARGETS)))
            raise optuna.TrialPruned()
        score = trials.score(folder)
        trial.set_user_attr("score", asdict(score))
        trial.set_user_attr("constraints", TARGETS.violations(score))
        return score.macro_f1

    return objective


def constraints(trial) -> list[float]:
    """TPE's constraints: the trial's misses of the targets (a trial without a score counts as infeasible)."""
    return trial.user_attrs.get("constraints", [1.0] * len(asdict(TARGETS)))


def storage_for(url: str):
    """An RDB storage with heartbeats (a dead worker's trial is failed and retried) or ``journal:PATH``."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return RDBStorage(
        url,
        heartbeat_interval=HEARTBEAT_SECONDS,
        grace_period=2 * HEARTBEAT_SECONDS,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
    )


def open_study(args: argparse.Namespace):
    """The named study in ``--storage``, created on first use and continued after."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=args.seed, constraints_func=constraints, n_startup_trials=args.startup_trials)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=args.startup_trials, n_warmup_steps=2)
    return optuna.create_study(
        study_name=args.study or f"{args.model}-recipe",
        storage=storage_for(args.storage),
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )


def cpu_name() -> str:
    """The CPU model and whether it has bfloat16 (AVX512-BF16), which halves a CPU training run's time."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "unknown")
    return f"{model} ({'AVX512-BF16' if 'avx512_bf16' in text else 'no bfloat16'})"


def head_proxy(start_from: str, backbone_weights: str) -> str:
    """A head-alone run on ``start_from``'s blocks, fed as it was (its preprocessing), reading the clean features only."""
    from tumor_ai.model.metadata import METADATA_FILE, ModelMetadata

    source = ModelMetadata.read(Path(start_from) / METADATA_FILE)
    return (f"--start-from {start_from} --epochs 0 --feature-variants 1 --preprocessing {source.preprocessing} "
            f"--input-size {source.input_size[0]} --backbone-weights {backbone_weights}")  # fmt: skip


def finetune_proxy(start_from: str, epochs: int = 1) -> str:
    """A continuation of ``start_from`` at its own input size: guidance on from the start, no early stop before the end."""
    from tumor_ai.model.metadata import METADATA_FILE, ModelMetadata

    source = ModelMetadata.read(Path(start_from) / METADATA_FILE)
    return (f"--start-from {start_from} --input-size {source.input_size[0]} --epochs {epochs} --warmup-epochs 0.25 "
            f"--early-stopping-from {epochs} --guidance-from 0 --guidance-ramp 1 --acquisition")  # fmt: skip


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="cnn", choices=sorted(SEARCH_SPACES), help="architecture whose recipe is tuned")
    parser.add_argument("--data", required=True, help="the <class>/ training folder")
    parser.add_argument("--masks", required=True, help="tumour outlines (training.counterfactuals and the reasons)")
    parser.add_argument("--partial", required=True, help="'tumour, type unknown' folder with groups (e.g. ../shared/data/br35h)")
    parser.add_argument("--trials", type=int, default=4, help="trials this worker adds to the study")
    parser.add_argument("--out", help="report folder (default docs/reports/tune/MODEL): report.json, report.md, front.png")
    parser.add_argument("--storage", help="Optuna storage URL, or journal:PATH (default sqlite:///OUT/study.db)")
    parser.add_argument("--study", help="study name (default MODEL-recipe)")
    parser.add_argument("--work", help="trial model folders (default .cache/tune/MODEL)")
    parser.add_argument("--cache-dir", default=".cache", help="decoded images and run backups")
    parser.add_argument("--limit", type=int, default=400, help="validation outlines each trial's reasons are measured on")
    parser.add_argument("--proxy", default=" ".join(PROXY), help="flags of the proxy run, in one string (default: %(default)s)")
    parser.add_argument("--startup-trials", type=int, default=2, help="random trials before TPE, and before pruning")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument(
        "--start-from",
        help="vgg16-head: the model folder whose frozen blocks the heads are trained on; cnn-finetune: the CNN continued",
    )
    parser.add_argument(
        "--backbone-weights", default="imagenet", help="vgg16-head: the backbone file its block-3 cache was keyed by"
    )
    parser.add_argument("--poll-seconds", type=float, default=10.0, help="how often a trial's epoch log is read")
    parser.add_argument("--report-only", action="store_true", help="write the report from the storage, train nothing")
    parser.add_argument(
        "--record-in",
        metavar="FOLDER",
        help="also write the study's figures into this model folder's tumor_ai.json and card (the model it tuned)",
    )
    parser.add_argument(
        "--adopted",
        action="store_true",
        help="with --record-in: the model in FOLDER is the chosen trial's run (else it stayed as trained)",
    )
    args = parser.parse_args(argv)
    if args.adopted and not args.record_in:
        parser.error("--adopted says the model in --record-in FOLDER is the chosen trial's: give --record-in FOLDER")
    if args.record_in and not (Path(args.record_in) / "tumor_ai.json").is_file():
        parser.error(f"--record-in {args.record_in}: no tumor_ai.json there (a model folder training.train wrote)")
    if args.model == "vgg16-head":
        if not args.start_from:
            parser.error("--model vgg16-head trains heads on a model folder's frozen blocks: give --start-from FOLDER")
        if args.proxy == " ".join(PROXY):
            args.proxy = head_proxy(args.start_from, args.backbone_weights)
    if args.model == "cnn-finetune":
        if not args.start_from:
            parser.error("--model cnn-finetune continues a trained CNN: give --start-from FOLDER")
        if args.proxy == " ".join(PROXY):
            args.proxy = finetune_proxy(args.start_from)
    args.proxy = shlex.split(args.proxy)
    args.out = args.out or f"docs/reports/tune/{args.model}"
    args.storage = args.storage or f"sqlite:///{args.out}/study.db"
    args.work = args.work or f"{args.cache_dir}/tune/{args.model}"
    return args


def main(argv: list[str] | None = None, prog: str | None = None, trials=None) -> None:
    """Run the command; ``trials`` replaces the subprocess trainer (tests)."""
    from .tune_head import HEAD_NOTE, HeadTrials
    from .tune_report import record_study, study_command, write_report

    args = parse_args(argv, prog)
    study = open_study(args)
    if not args.report_only and not study.trials:
        study.enqueue_trial(REFERENCE[args.model], user_attrs={"reference": True})
    if not args.report_only:
        if args.model == "vgg16-head":
            study.set_user_attr("note", HEAD_NOTE)
        trials = trials or (HeadTrials(args) if args.model == "vgg16-head" else SubprocessTrials(args))
        study.optimize(objective_for(args, trials), n_trials=args.trials, catch=(RuntimeError,))
        if getattr(trials, "source_score", None) is not None:  # a head study's baseline: the source's head, untrained
            study.set_user_attr("source_score", asdict(trials.source_score))
    print(write_report(study, Path(args.out), TARGETS))
    if args.record_in:
        command = study_command(sys.argv[1:] if argv is None else argv)
        print(f"wrote the study into {record_study(Path(args.record_in), Path(args.out), command, args.adopted)} and its card")


if __name__ == "__main__":
    main()
