"""The tuning study's report: every trial's accuracy beside its reasons, the best feasible recipe, importances, a plot.

Written by ``tumor-ai tune`` into its ``--out`` folder (``report.json``, ``report.md``, ``front.png``),
from the study's storage alone, so ``--report-only`` rewrites it on any machine that can read the storage.
"""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = ("macro-F1", "accuracy", "map peak on the tumour", "tumour erased, kept (training fill)",
           "tumour erased, kept (held-out fills, highest)", "control kept (training fill)",
           "control kept (held-out fills, lowest)", "Br35H held-out, called a tumour")  # fmt: skip


def trial_rows(study, targets) -> list[dict]:
    """One row per trial: its state, recipe, score, misses of ``targets`` (recomputed from the score, so that every
    trial is judged by today's targets) and minutes."""
    from .tune import TrialScore

    rows = []
    for trial in study.trials:
        score = trial.user_attrs.get("score")
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
        rows.append({
            "number": trial.number,
            "state": trial.state.name.lower(),
            "params": trial.params,
            "flags": trial.user_attrs.get("flags", ""),
            "cpu": trial.user_attrs.get("cpu", ""),
            "score": score,
            "constraints": targets.violations(TrialScore(**score)) if score else None,
            "minutes": None if seconds is None else round(seconds / 60, 1),
            "epochs_reported": len(trial.intermediate_values),
        })  # fmt: skip
        rows[-1]["feasible"] = bool(score) and all(value <= 0 for value in rows[-1]["constraints"])
    return rows


def best_row(rows: list[dict]) -> dict | None:
    """The most accurate feasible trial; without one, the scored trial that misses the targets by least."""
    scored = [row for row in rows if row["score"]]
    feasible = [row for row in scored if row["feasible"]]
    if feasible:
        return max(feasible, key=lambda row: row["score"]["macro_f1"])
    return min(scored, key=lambda row: sum(max(value, 0.0) for value in row["constraints"]), default=None)


def importances(study) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over the scored trials; empty until there are enough of them."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 3:
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # its forest is random: a seed, one report
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
        return {key: round(value, 3) for key, value in found.items()}
    except (RuntimeError, ValueError):
        return {}


def cells(score: dict) -> list[str]:
    kept, held = score["held_out_tumour_kept"], score["held_out_control_kept"]
    return [f"{score['macro_f1']:.4f}", f"{score['accuracy']:.4f}", f"{score['pointing_game']:.3f}",
            f"{score['tumour_kept']:.3f}", f"{max(kept.values()):.3f}" if kept else "n/a", f"{score['control_kept']:.3f}",
            f"{min(held.values()):.3f}" if held else "n/a", f"{score['other_collection']:.3f}"]  # fmt: skip


def markdown(rows: list[dict], best: dict | None, found: dict[str, float], targets, source: dict | None = None) -> str:
    """The report as Markdown: the trials table, the chosen trial and the importances."""
    lines = [
        f"| trial | state | {' | '.join(COLUMNS)} | meets the targets | minutes | recipe |",
        "|---|---|" + "---:|" * len(COLUMNS) + "---|---:|---|",
    ]
    for row in rows:
        values = cells(row["score"]) if row["score"] else ["–"] * len(COLUMNS)
        params = ", ".join(
            f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}" for key, value in row["params"].items()
        )
        lines.append(
            f"| {row['number']} | {row['state']} | {' | '.join(values)} | {'yes' if row['feasible'] else 'no'} "
            f"| {row['minutes'] if row['minutes'] is not None else '–'} | {params} |"
        )
    if source:  # a head study's baseline row
        lines.append(f"| source | its own head | {' | '.join(cells(source))} | – | – | as trained |")
    lines.append("")
    lines.append(
        f"Targets: map peak ≥ {targets.pointing_game}, tumour erased kept ≤ {targets.tumour_kept} with every fill, "
        f"control kept ≥ "
        f"{targets.control_kept} with every fill, Br35H held-out ≥ {targets.other_collection}."
    )
    if best:
        kind = "best feasible trial" if best["feasible"] else "no trial meets every target; closest"
        lines.append(f"Chosen ({kind}): trial {best['number']}, `{best['flags']}`.")
    if found:
        lines.append("Parameter importances (fANOVA): " + ", ".join(f"{key} {value:.2f}" for key, value in found.items()) + ".")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, targets, source: dict | None = None) -> None:
    """macro-F1 against the map's peak (or, where every trial shares one map, the tumour-erased test) and against the
    other collection; filled markers meet every target, a star is a head study's source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [row for row in rows if row["score"]]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    panels = [("pointing_game", "map peak on the tumour", targets.pointing_game),
              ("other_collection", "Br35H held-out, called a tumour", targets.other_collection)]  # fmt: skip
    if len({row["score"]["pointing_game"] for row in scored}) == 1:  # one map for all (a head study): show the erasures
        panels[0] = ("tumour_kept", "tumour erased, kept (training fill)", targets.tumour_kept)
    for axis, (key, label, target) in zip(axes, panels):
        for row in scored:
            face = "tab:blue" if row["feasible"] else "none"
            axis.scatter(row["score"][key], row["score"]["macro_f1"], facecolors=face, edgecolors="tab:blue")
            axis.annotate(str(row["number"]), (row["score"][key], row["score"]["macro_f1"]), fontsize=8, xytext=(3, 3),
                          textcoords="offset points")  # fmt: skip
        if source:
            axis.scatter(source[key], source["macro_f1"], marker="*", s=120, color="tab:red", label="source, its own head")
        axis.axvline(target, color="grey", linestyle="--", linewidth=1)
        axis.set_xlabel(label)
    axes[0].set_ylabel("validation macro-F1")
    if source:
        axes[1].legend(loc="upper right", fontsize=8)
    figure.suptitle("Tuning study: each trial (filled: meets every target)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(study, out: Path, targets) -> str:
    """Write ``report.json``, ``report.md`` and ``front.png`` into ``out``; return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study, targets)
    best = best_row(rows)
    found = importances(study)
    source = study.user_attrs.get("source_score")
    text = markdown(rows, best, found, targets, source)
    minutes = sum(row["minutes"] or 0 for row in rows)
    cpus = sorted({row["cpu"] for row in rows if row["cpu"]})
    summary = {"study": study.study_name, "trials": len(rows), "minutes": round(minutes, 1), "cpus": cpus,
               "targets": vars(targets) if hasattr(targets, "__dict__") else {}, "best": best, "importances": found,
               "source": source, "rows": rows}  # fmt: skip
    (out / "report.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    footer = f"{len(rows)} trials, {minutes:.0f} minutes in all, on {', '.join(cpus) or 'n/a'}."
    if study.user_attrs.get("note"):  # what this kind of study measures differently (e.g. a head study's map)
        footer += f"\n\n{study.user_attrs['note']}"
    (out / "report.md").write_text(f"{text}\n\n{footer}\n")
    if any(row["score"] for row in rows):
        plot(rows, out / "front.png", targets, source)
    return text


RECORDING_FLAGS = ("--record-in", "--adopted", "--report-only")


def study_command(argv: list[str], prog: str = "tumor-ai tune") -> str:
    """The command that ran the study: ``argv`` without the flags that only record or rewrite its report."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in RECORDING_FLAGS:
            skip = word == "--record-in"
        elif not word.startswith("--record-in="):
            kept.append(word)
    return " ".join([prog, *kept])


def record_study(folder: Path, out: Path, command: str, adopted: bool) -> Path:
    """Write the study's report (``out/report.json``) into ``folder``'s ``tumor_ai.json`` under ``studies``, its plot
    beside it, and rewrite its card, so the card shows the study beside the model it tuned."""
    import shutil

    from tumor_ai.model.metadata import METADATA_FILE, STUDY_PLOT, ModelMetadata, StudyRecord
    from tumor_ai.publish.card import write_model_card

    report = json.loads((out / "report.json").read_text())
    best = report["best"]
    if best is None:
        raise SystemExit(f"error: the study in {out} has no scored trial to record")
    metadata = ModelMetadata.read(folder / METADATA_FILE)
    metadata.studies[report["study"]] = StudyRecord(
        report=out.as_posix(),
        command=command,
        trials=report["trials"],
        minutes=report["minutes"],
        cpus=report["cpus"],
        targets=report["targets"],
        chosen=best["number"],
        feasible=best["feasible"],
        score={key: value for key, value in best["score"].items() if key != "train_seconds"},
        flags=best["flags"],
        importances=report["importances"],
        adopted=adopted,
    )
    if (out / "front.png").exists():  # the card shows the plot: it travels with the model to the Hub
        shutil.copy(out / "front.png", folder / STUDY_PLOT.format(study=report["study"]))
    (folder / METADATA_FILE).write_text(metadata.to_json())
    write_model_card(folder)
    return folder / METADATA_FILE
