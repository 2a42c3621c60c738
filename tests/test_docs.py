"""The docs cannot drift from the shipped models: their tables show exactly what each ``tumor_ai.json`` says.

Every figure a table in ``README.md`` or ``docs/`` shows about a shipped model (accuracy, macro-F1, ECE and
temperature, per-class recall, the not-an-MRI check's rates, where the maps point, the prediction sets,
training time and throughput) is read here from ``models/NAME/tumor_ai.json`` and formatted as the docs
round it; a retrained model whose docs were not updated fails here. Also: the README stays a front door
(at most 250 lines; the Space shows all of it), and every relative link in the README, ``DEVELOPERS.md``
and ``docs/`` points at a file (and heading) that exists. Plain files only: no TensorFlow, no network.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MODELS = ("cnn", "vgg16")
README_MAX_LINES = 250
LABEL_WORDS = {"glioma": "glioma", "meningioma": "meningioma", "notumor": "no tumour", "pituitary": "pituitary"}
MAP_NAMES = {"grad_cam": "Grad-CAM", "grad_cam_plus_plus": "Grad-CAM++", "hires_cam": "HiResCAM", "layer_cam": "LayerCAM"}
TUMOURS = ("glioma", "meningioma", "pituitary")  # the classes with outlines, in the docs' order


@cache
def meta(name: str) -> dict:
    return json.loads((ROOT / "models" / name / "tumor_ai.json").read_text())


def pct(value: float, places: int = 0) -> str:
    """A share as the docs write it: ``0.866`` -> ``87%``; a whole 100% without decimals."""
    return "100%" if value == 1 else format(value, f".{places}%")


def with_interval(block: dict, fmt) -> str:
    return f"{fmt(block['value'])} ({fmt(block['low'])}–{fmt(block['high'])})"


def per_class(block: dict, fmt, labels=TUMOURS) -> str:
    return " / ".join(fmt(block["per_class"][label]["value"]) for label in labels)


def map_served(found: dict) -> str:
    return f"{MAP_NAMES[found['method']]} at `{found['layer']}`"


def _prose(text: str) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


@cache
def tables(path: Path) -> list[list[list[str]]]:
    """Each Markdown table in the file as rows of stripped cells (header first, the ``---`` row dropped)."""
    found, rows = [], []
    for line in [*_prose(path.read_text()), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif rows:
            found.append(rows)
            rows = []
    return found


def table(path: Path, header: str) -> list[list[str]]:
    """The one table in ``path`` whose first header cell starts with ``header``."""
    matches = [rows for rows in tables(path) if rows[0][0].startswith(header)]
    assert len(matches) == 1, f"{path.name}: {len(matches)} tables whose header starts with {header!r}"
    return matches[0]


def row(rows: list[list[str]], *first: str) -> list[str]:
    """The one row whose first cells start with ``first``."""
    matches = [cells for cells in rows[1:] if all(cell.startswith(want) for cell, want in zip(cells, first))]
    assert len(matches) == 1, f"{len(matches)} rows starting {first!r} in the table headed {rows[0][0]!r}"
    return matches[0]


def _title(name: str) -> str:
    return {"cnn": "custom CNN", "vgg16": "VGG16"}[name]


def lowest_recall(name: str) -> str:
    recalls = {label: figures["recall"] for label, figures in meta(name)["metrics"]["validation_per_class"].items()}
    label = min(recalls, key=recalls.get)
    return f"{recalls[label]:.3f} ({LABEL_WORDS[label]})"


def ece(name: str) -> str:
    calibration = meta(name)["calibration"]
    return f"{calibration['ece_before']:.4f} → {calibration['ece_after']:.4f} (T={calibration['temperature']:.2f})"


def other_pictures(name: str) -> tuple[int, str]:
    check = meta(name)["mri_check"]
    general, medical = check["non_mri_images"], check["medical_non_mri_images"]
    rejected = (general * check["non_mri_rejection_rate"] + medical * check["medical_non_mri_rejection_rate"]) / (
        general + medical
    )
    return general + medical, pct(round(rejected, 3), 1)


def model_size(name: str) -> str:
    return f"{(ROOT / 'models' / name / 'model.keras').stat().st_size / 1e6:.2g} MB"


def test_the_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    assert lines[0] == "---", "the Hugging Face Space reads the README's front matter: keep it first"


def test_the_readme_s_first_command_installs_the_tumor_ai_command():
    """After the README's run command a clone has `.venv/bin/tumor-ai`: pip installs the project itself, whose console
    script is the `tumor-ai` entry point."""
    import tomllib

    command = next(line for line in README.read_text().splitlines() if line.startswith("python3 -m venv .venv"))
    install = command.split("&&")[1].split()
    assert install[:2] == [".venv/bin/pip", "install"] and "-e" in install and install[install.index("-e") + 1] == "."
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"tumor-ai": "tumor_ai.cli:main"} and "`.venv/bin/tumor-ai serve`" in README.read_text()


@pytest.mark.parametrize("name", MODELS)
def test_the_readme_models_table_is_the_shipped_metadata(name):
    figures, conformal = meta(name)["metrics"]["validation"], meta(name)["conformal"]
    rows = table(README, "model (validation split")
    assert f"{figures['images']:,} images" in rows[0][0]
    total, rejected = other_pictures(name)
    assert f"(of {total})" in rows[0][-1]
    served = conformal["cross_fit"][str(conformal["served_level"])]
    other = meta(name)["other_collections"]["br35h"]
    assert "distinct slices of another collection that the model never trained on" in rows[0][4]
    assert row(rows, f"{'VGG16 transfer' if name == 'vgg16' else 'custom CNN'} (`models/{name}`)")[1:] == [
        model_size(name),
        f"**{figures['accuracy']:.4f}**",
        f"{figures['macro_f1']:.4f}",
        f"{pct(other['sensitivity'], 1)} of {other['slices']}",
        lowest_recall(name),
        ece(name),
        f"{pct(served['coverage'], 1)} / {served['set_size']:.2f}",
        f"{pct(meta(name)['mri_check']['validation_pass_rate'], 2)} / {rejected}",
    ]
    assert f"{pct(conformal['served_level'])}: coverage" in rows[0][7]


@pytest.mark.parametrize("name", MODELS)
def test_the_readme_says_where_the_models_look_as_measured(name):
    found = meta(name)["localisation"]
    erased = found["erased"]
    rows = table(README, "model: where it looks")
    assert f"an even map: {found['mask_share']['value']:.3f}" in rows[0][3]
    assert row(rows, "VGG16 transfer" if name == "vgg16" else "custom CNN")[1:] == [
        map_served(found),
        f"{pct(found['pointing_game']['value'])} ({per_class(found['pointing_game'], pct)})",
        f"{found['relevance_mass']['value']:.3f}",
        f"{pct(erased['tumour_kept']['value'])} ({per_class(erased['tumour_kept'], pct)})",
        pct(erased["control_kept"]["value"]),
    ]
    assert f"the {found['images']} validation images that have a tumour outline" in README.read_text()


@pytest.mark.parametrize("name", MODELS)
def test_the_models_page_scores_table(name):
    figures, found = meta(name)["metrics"]["validation"], meta(name)["localisation"]
    rows = table(DOCS / "models.md", "model (group-aware validation split")
    total, rejected = other_pictures(name)
    assert f"{figures['images']:,} images" in rows[0][0] and f"(of {total}," in rows[0][5]
    title = "VGG16 transfer" if name == "vgg16" else "custom CNN"
    assert row(rows, f"{title} (`models/{name}`, {model_size(name)};")[1:] == [
        f"**{figures['accuracy']:.4f}**",
        f"{figures['macro_f1']:.4f}",
        lowest_recall(name),
        ece(name),
        f"{pct(meta(name)['mri_check']['validation_pass_rate'], 2)} / {rejected}",
        pct(found["pointing_game"]["value"]),
        pct(found["erased"]["tumour_kept"]["value"]),
    ]


def test_the_two_networks_table_names_the_maps_served():
    rows = next(rows for rows in tables(DOCS / "models.md") if rows[0][1:] == ["custom CNN", "VGG16 transfer"])
    assert row(rows, "map served")[1:] == [map_served(meta("cnn")["localisation"]), map_served(meta("vgg16")["localisation"])]
    assert [meta(name)["cam_method"] for name in MODELS] == [meta(name)["localisation"]["method"] for name in MODELS]


@pytest.mark.parametrize("name", MODELS)
def test_the_calibration_table(name):
    calibration = meta(name)["calibration"]
    rows = next(rows for rows in tables(DOCS / "models.md") if rows[0][:2] == ["model", "temperature"])
    assert row(rows, f"{_title(name)} (split run)")[1:] == [
        f"{calibration['temperature']:.2f}",
        f"{calibration['ece_before']:.4f}",
        f"{calibration['ece_after']:.4f}",
    ]


@pytest.mark.parametrize("name", MODELS)
def test_the_reliability_table(name):
    """The reliability diagram's row: the folder's picture and its bins' ECEs (the calibration block's), or none yet."""
    calibration = meta(name)["calibration"]
    rows = next(rows for rows in tables(DOCS / "models.md") if rows[0][:2] == ["model", "reliability diagram"])
    shown = row(rows, f"{_title(name)} (split run)")[1:]
    if "reliability" not in calibration:
        assert shown[0].startswith("none yet") and shown[1] == "-"
        assert not (ROOT / "models" / name / "reliability_diagram.png").exists()
        return
    bins = calibration["reliability"]
    assert (bins["before"]["ece"], bins["after"]["ece"]) == (calibration["ece_before"], calibration["ece_after"])
    assert shown == [
        f"[reliability_diagram.png](../models/{name}/reliability_diagram.png)",
        f"{bins['before']['ece']:.4f} → {bins['after']['ece']:.4f}",
    ]


@pytest.mark.parametrize("name", MODELS)
def test_the_prediction_sets_table(name):
    conformal = meta(name)["conformal"]
    method = conformal["method"]
    (other,) = set(conformal["compared"]) - {method}
    rows = table(DOCS / "models.md", "model (score kept)")
    labels = list(LABEL_WORDS)
    assert rows[0][4].endswith("(" + " / ".join(LABEL_WORDS[label] for label in labels) + ")")
    for level, figures in conformal["cross_fit"].items():
        assert row(rows, f"{_title(name)} ({method.upper()})", pct(float(level)))[2:] == [
            pct(figures["coverage"], 1),
            f"{figures['set_size']:.2f}",
            " / ".join(pct(figures["per_class"][label]["coverage"], 1) for label in labels),
            f"{other.upper()}: {conformal['compared'][other][level]['set_size']:.2f}",
        ]


def test_where_the_models_look_table():
    path = DOCS / "where-the-models-look.md"
    rows = table(path, "held-out tumour slices with an outline")
    columns = [meta(name)["localisation"] for name in MODELS]
    assert rows[0][1:3] == [_title(name) for name in MODELS]
    labels = [cells[0] for cells in rows[1:]]

    def figures(label: str, offset: int = 0) -> list[str]:
        return rows[1 + labels.index(next(text for text in labels if text.startswith(label))) + offset][1:3]

    def each(fmt) -> list[str]:
        return [fmt(found) for found in columns]

    assert figures("map served") == each(map_served)
    assert figures("pointing game") == each(lambda found: with_interval(found["pointing_game"], pct))
    assert figures("pointing game", 1) == each(lambda found: per_class(found["pointing_game"], pct))
    assert figures("relevance mass") == each(lambda found: with_interval(found["relevance_mass"], "{:.3f}".format))
    assert any(f"(an even map: {columns[0]['mask_share']['value']:.3f})" in label for label in labels)
    assert figures("tumour erased") == each(lambda found: with_interval(found["erased"]["tumour_kept"], pct))
    assert figures("tumour erased", 1) == each(lambda found: per_class(found["erased"]["tumour_kept"], pct))
    assert figures("same-size region erased elsewhere") == each(lambda found: with_interval(found["erased"]["control_kept"], pct))
    assert figures("mean drop") == each(lambda found: with_interval(found["erased"]["tumour_probability_drop"], "{:.3f}".format))
    assert figures("deletion AUC / insertion AUC") == each(
        lambda found: (
            f"{found['deletion_auc']['value']:.3f} / {found['insertion_auc']['value']:.3f} "
            f"({found['deletion_auc']['images']} images)"
        )
    )
    assert figures("map mass in the outer tenth") == each(lambda found: f"{found['border_mass']['value']:.3f}")
    text = path.read_text()
    assert f"**{columns[0]['images']} validation images that have an outline** ({columns[0]['slices']} distinct" in text


@pytest.mark.parametrize("name", MODELS)
def test_the_recipe_tables_show_the_shipped_run(name):
    figures, found = meta(name)["metrics"], meta(name)["localisation"]
    per_class_figures = figures["validation_per_class"]
    erased = found["erased"]
    cells = next(
        cells
        for cells in table(DOCS / "models.md", f"{'VGG16' if name == 'vgg16' else 'CNN'} recipe")
        if "**shipped**" in cells[0]
    )
    recall = (
        lowest_recall(name) if name == "vgg16" else f"{per_class_figures['meningioma']['recall']:.3f}"
    )  # the CNN's table shows its meningioma recall, the VGG16's its lowest
    assert cells[1:9] == [
        f"{figures['validation']['accuracy']:.4f}",
        f"{figures['validation']['macro_f1']:.4f}",
        recall,
        f"{per_class_figures['notumor']['precision']:.3f}",
        f"{pct(found['pointing_game']['value'])} ({per_class(found['pointing_game'], pct)})",
        f"{found['relevance_mass']['value']:.{3 if name == 'vgg16' else 2}f}",
        f"{pct(erased['tumour_kept']['value'])} ({per_class(erased['tumour_kept'], pct)})",
        pct(erased["control_kept"]["value"]),
    ]
    if name == "cnn":
        assert cells[9].startswith(f"{round(meta(name)['training']['seconds'] / 60)} min")


@pytest.mark.parametrize("name", MODELS)
def test_the_training_step_tables(name):
    training = meta(name)["training"]
    throughput = training["throughput"]
    cells = row(table(DOCS / "models.md", f"{'VGG16' if name == 'vgg16' else 'CNN'} step"), "split run")
    if name == "cnn":
        seconds = training["seconds"]
        assert cells[1:] == [
            f"{training['epochs_run']['cnn']} (best: {training['chosen_epochs']})",
            f"{seconds / 60:.1f} min ({seconds:,} s)",
            f"{throughput['images_per_second']} ({throughput['median_epoch_seconds']:.1f} s)",
        ]
    else:
        runs, best = training["epochs_run"], training["stage_epochs"]
        assert cells[1] == (
            f"head {runs['head']} (best {best['head']}), fine-tuning {runs['fine-tune']} (best {best['fine_tune']})"
        )
        assert cells[3] == f"{throughput['images_per_second']} ({throughput['median_epoch_seconds']:.0f} s)"


@pytest.mark.parametrize("name", MODELS)
def test_the_not_an_mri_table(name):
    check = meta(name)["mri_check"]
    rows = table(DOCS / "robustness-and-safety.md", "pictures that are not brain MRI")
    column = 2 if name == "vgg16" else 3
    assert rows[0][column].startswith("VGG16" if name == "vgg16" else "CNN")
    first_cells = {
        "photo": "photos and documents",
        "generated": "generated",
        "ct": "CT",
        "ultrasound": "ultrasound",
        "radiograph": "radiographs",
        "other medical": "a Shepp-Logan head phantom",
    }
    assert set(first_cells) == set(check["families"])
    for family, first in first_cells.items():
        figures = check["families"][family]
        cells = row(rows, first)
        assert cells[1] == str(figures["pictures"])
        assert cells[column] == f"{pct(figures['rejected'])} / {pct(figures['rejected_source_left_out'])}"
    cells = row(rows, "**validation MRIs passing**")
    assert cells[0] == f"**validation MRIs passing** (of {check['validation_images']:,})"
    assert cells[column] == pct(check["validation_pass_rate"], 2)


COLLECTIONS = DOCS / "tumours-from-any-collection.md"


@pytest.mark.parametrize("name", MODELS)
def test_the_other_collection_table_is_the_shipped_metadata(name):
    found = meta(name)["other_collections"]["br35h"]
    called = found["called"]
    seen = "none seen in training" if found["seen_in_training"] == "none" else "held-out groups; trained on the others"
    assert row(table(COLLECTIONS, "model"), "VGG16 transfer" if name == "vgg16" else "custom CNN")[1:] == [
        f"{found['slices']} ({found['images']} images; {seen})",
        f"**{pct(found['sensitivity'], 1)}**",
        pct(found["sensitivity_per_image"], 1),
        " / ".join(pct(called[label], 1) for label in TUMOURS),
        pct(called["notumor"], 1),
        pct(found["mri_check_pass_rate"], 1),
    ]
    readme = " ".join(README.read_text().split())
    assert pct(found["sensitivity"], 1) in readme


def test_the_sequence_cue_table_is_the_committed_report():
    report = json.loads((DOCS / "reports" / "sequence_cues.json").read_text())
    rows = table(COLLECTIONS, "cue")
    assert rows[0][1:] == list(report["auc"])
    for cue, *cells in rows[1:]:
        for view, cell in zip(report["auc"], cells):
            found = report["auc"][view][cue]
            assert cell == (f"{found['within']:.3f} / {found['across']:.3f}" if "across" in found else f"{found['within']:.3f}")
    assert f"on the {report['other_slices']} Br35H tumour slices" in " ".join(COLLECTIONS.read_text().split())


def test_the_probe_table_is_the_committed_report():
    from training.probe import table as probe_table

    report = json.loads((DOCS / "reports" / "collection_probe.json").read_text())
    assert probe_table(report["arms"]) in COLLECTIONS.read_text()


def _slug(heading: str) -> str:
    """The anchor GitHub and the Hub give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in _prose(path.read_text()) if re.match(r"#{1,6} ", line)}


LINKED = [README, ROOT / "DEVELOPERS.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("path", LINKED, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_that_exists(path):
    broken = []
    for line in _prose(path.read_text()):
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(target)
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{target} (no such heading)")
    assert not broken, f"{path.relative_to(ROOT)}: {broken}"


def test_the_docs_pages_are_all_linked_from_the_readme():
    text = README.read_text()
    assert [page.name for page in sorted(DOCS.glob("*.md")) if f"(docs/{page.name}" not in text] == []


@pytest.mark.parametrize("name", MODELS)
def test_each_shipped_card_is_what_its_metadata_writes(name):
    """A card edited by hand, or left behind by a change to the card's code, fails here: rewrite it with write_model_card."""
    from tumor_ai.model.metadata import ModelMetadata
    from tumor_ai.publish.card import model_card

    folder = ROOT / "models" / name
    assert (folder / "README.md").read_text() == model_card(ModelMetadata.read(folder / "tumor_ai.json"))


@pytest.mark.parametrize("study", ["cnn", "cnn-finetune", "vgg16-head"])
def test_the_tuning_study_in_the_docs_is_the_study_s_own_report(study):
    """Each study's table in docs/models.md is its report.md's, row for row, with its chosen trial and importances
    (``tumor-ai tune --report-only`` writes it)."""
    report = ROOT / "docs" / "reports" / "tune" / study / "report.md"
    rows = [line for line in report.read_text().splitlines() if line.startswith(("| ", "Chosen", "Parameter importances"))]
    models = (DOCS / "models.md").read_text()
    assert rows and all(row in models for row in rows), f"rewrite the {study} study's table in docs/models.md from report.md"
    assert f"reports/tune/{study}/front.png" in models


STUDIES = {"cnn": ("cnn-recipe", "cnn-finetune-recipe"), "vgg16": ("vgg16-head-recipe",)}


@pytest.mark.parametrize("name", MODELS)
def test_each_model_records_its_tuning_studies_as_their_reports(name):
    """The studies in a model's metadata (``tumor-ai tune --record-in``) are the committed reports' figures."""
    recorded = meta(name)["studies"]
    assert sorted(recorded) == sorted(STUDIES[name])
    for study in recorded.values():
        report = json.loads((ROOT / study["report"] / "report.json").read_text())
        assert study["chosen"] == report["best"]["number"] and study["trials"] == report["trials"]
        assert study["importances"] == report["importances"]
        assert all(study["score"][key] == value for key, value in report["best"]["score"].items() if key != "train_seconds")


def test_the_readme_studies_table_is_the_models_metadata():
    """The README's table of tuning studies shows each study as the model's card does, row for row."""
    from tumor_ai.model.metadata import ModelMetadata
    from tumor_ai.publish.card import STUDY_COLUMNS, study_row

    text = README.read_text()
    assert f"| {STUDY_COLUMNS} |" in text
    for name in MODELS:
        for study, record in ModelMetadata.read(ROOT / "models" / name / "tumor_ai.json").studies.items():
            assert study_row(study, record) in text, f"rewrite the README's row of {study} from models/{name}"


def test_the_readme_ablation_table_is_the_models_page_s():
    """The README's VGG16 ablation rows are docs/models.md's, cell for cell, and its shipped row is the metadata's."""
    short, full = table(README, "VGG16 ablation row"), table(DOCS / "models.md", "VGG16 ablation row")
    assert len(short) == len(full)
    for brief, whole in zip(short[1:], full[1:]):
        assert brief[1:] == [whole[index] for index in (1, 5, 7, 8, 9, 10)], f"README row {brief[0]!r} drifted"
    shipped = row(short, "D retrained")
    assert shipped[1].startswith(f"{meta('vgg16')['metrics']['validation']['accuracy']:.4f} / ")
    assert shipped[2] == pct(meta("vgg16")["other_collections"]["br35h"]["sensitivity"], 1)
