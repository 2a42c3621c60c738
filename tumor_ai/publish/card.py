"""Model cards written from a model's metadata, so the card never disagrees with the model.

The card is the model folder's ``README.md``, with Hugging Face front matter, and is what the
app's About tab shows and what ``training.publish`` uploads.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from tumor_ai import DISCLAIMER
from tumor_ai.core.cam import method_name
from tumor_ai.core.wording import listed, map_trust  # noqa: F401 - map_trust moved to wording; for one release
from tumor_ai.model import registry as architectures
from tumor_ai.model.labels import display_name
from tumor_ai.model.metadata import (
    CARD_FILE,
    METADATA_FILE,
    RELIABILITY_FILE,
    STUDY_PLOT,
    Figure,
    LocalisationRecord,
    MachineRecord,
    ModelMetadata,
    MriCheckRecord,
    TrainingRecord,
)

DATASET_ID = "masoudnickparvar/brain-tumor-mri-dataset"
LIMITATIONS = [
    "Trained on one public Kaggle collection (figshare, SARTAJ and Br35H, mostly T1 contrast-enhanced "
    "slices); other scanners, sequences, orientations and populations will score lower.",
    "The dataset has no patient ids: the validation split keeps copies of a slice together, but "
    "adjacent slices of one patient can still fall on both sides, so the figures may be optimistic.",
    "It sorts a slice into the {count} classes it knows; any other finding (stroke, haemorrhage, other "
    "tumours) is forced into one of them. The app's MRI check rejects pictures that are not brain MRI "
    "slices, but it cannot know every kind of image.",
    "Grad-CAM shows where the evidence for a class lay in the model's last convolutional features; "
    "it is coarse and is not a segmentation of the tumour.",
]


def front_matter(metadata: ModelMetadata, repo_id: str | None = None) -> str:
    """YAML front matter that the Hugging Face Hub reads (library, task, licence, base model, metrics)."""
    scores = metadata.metrics.validation if metadata.metrics else None
    architecture = architectures.find(metadata.architecture)
    results = (
        [
            EvalResult(
                task_type="image-classification",
                dataset_type=DATASET_ID,
                dataset_name="Brain Tumor MRI Dataset (group-aware validation split of Training)",
                metric_type=metric,
                metric_name=name,
                metric_value=value,
            )
            for value, metric, name in ((scores.accuracy, "accuracy", None), (scores.macro_f1, "f1", "macro F1"))
        ]
        if scores
        else []
    )
    data = ModelCardData(
        library_name="keras",
        pipeline_tag="image-classification",
        license=metadata.license,
        datasets=[DATASET_ID],
        tags=["keras", "image-classification", "brain-mri", "medical-imaging", "grad-cam", "tumor-ai"],
        base_model=architecture.base_model if architecture else None,
        model_name=repo_id or metadata.name,
        eval_results=results or None,
    )
    return f"---\n{data.to_yaml()}\n---\n"


def model_card(metadata: ModelMetadata, repo_id: str | None = None, standalone: bool = True) -> str:
    """The whole card: front matter, intended use, data, metrics, limitations, attribution.

    ``standalone=False`` is the card as the app's About tab shows it: no front matter, no image
    links, and no disclaimer, which the tab states once above all the cards.
    """
    training = metadata.training
    title = metadata.title or architectures.title(metadata.architecture)
    parts = [
        front_matter(metadata, repo_id) if standalone else "",
        f"# tumor-ai {metadata.name}: {title} for brain-tumour MRI slices\n",
        f"> **{DISCLAIMER}**\n" if standalone else "",
        "## Intended use\n",
        metadata.intended_use + "\n",
        "Out of scope: diagnosis, triage or any clinical decision; images other than single brain MRI slices.\n",
        *model_section(metadata),
        *data_section(metadata),
    ]
    guided = training.guidance_map.method if training.guidance_map else "grad_cam"  # the CNN's run predates the record
    parts += recipe_section(training.arguments or {}, method_name(guided), bool(training.features))
    parts += metrics_section(metadata, standalone)
    parts += other_collections_section(metadata)
    parts += localisation_section(metadata)
    parts += conformal_section(metadata)
    parts += mri_check_section(metadata.mri_check)
    parts += studies_section(metadata, standalone)
    if training.command:
        parts += _reproduce(metadata)
    parts += ["## Limitations\n", *[f"- {item.format(count=len(metadata.labels))}" for item in LIMITATIONS], ""]
    parts += licence_section(metadata)
    return "\n".join(parts) + "\n"


def model_section(metadata: ModelMetadata) -> list[str]:
    """What the network is, what it takes and gives, and which map the app draws."""
    return [
        "## Model\n",
        f"- Architecture: {metadata.description or metadata.architecture}",
        f"- Classes: {', '.join(f'`{label}` ({display_name(label)})' for label in metadata.labels)}",
        f"- Input: {_crop_text(metadata)}{metadata.input_size[0]}x{metadata.input_size[1]} RGB, 0..255, then "
        f"`{metadata.preprocessing}` preprocessing{PREPROCESSING_TEXT.get(metadata.preprocessing, '')} (see "
        "`tumor_ai/core/preprocessing.py`; serving and training call the same code)",
        f"- Map shown by the app: {method_name(metadata.cam_method)} at `{metadata.cam_layer}`",
        *_test_time_flip_text(metadata),
        f"- Files: `model.keras` (Keras 3, no optimizer state), `{METADATA_FILE}` (labels, preprocessing, metrics, versions)\n",
    ]


def data_section(metadata: ModelMetadata) -> list[str]:
    """The data and its group-aware split; for a refit, why the metrics are the split run's."""
    data, training = metadata.dataset, metadata.training
    parts = []
    if data:
        parts += [
            "## Data\n",
            f"{data.name} ({data.license}): {data.images} images, {data.duplicate_groups} groups of copies. "
            f"Split: {data.split}; {data.train_images} training and {data.validation_images} validation images "
            f"(seed {data.seed}). Dataset fingerprint `{data.fingerprint_sha256[:16]}…`.\n",
        ]
    if training.refit:
        parts += [
            "## These weights are a refit\n",
            f"After the split run chose {_epochs_text(training)} by early stopping on the group-aware validation "
            f"split, the same recipe was trained for as many epochs on all {data.train_images if data else '?'} images "
            "of the folder. No image is held out from these weights, so **the metrics below are the split run's**: "
            "the published estimate of how this recipe does on slices it has never seen. The temperature is the "
            "split run's too.\n",
        ]
    return parts


def metrics_section(metadata: ModelMetadata, standalone: bool = True) -> list[str]:
    """Accuracy, macro-F1 and calibration on the validation split, per class, with the measured localisation beside."""
    if not metadata.metrics:
        return []
    scores, calibration, found = metadata.metrics.validation, metadata.calibration, metadata.localisation
    beside = ("", "", "")
    if found:
        beside = (
            " map's peak on the tumour | tumour class kept with the tumour erased |",
            "---:|---:|",
            f" {found.pointing_game.value:.0%} | {found.erased.tumour_kept.value:.0%} |",
        )
    where = "; where the map points and whether the answer needs the tumour on those with a tumour outline (next section)"
    ece_before = scores.ece if calibration.ece_before is None else calibration.ece_before
    ece_after = "-" if calibration.ece_after is None else calibration.ece_after
    other = ("", "", "")
    for name, record in metadata.other_collections.items():
        other = (
            f" {name} tumour slices called a tumour |",
            "---:|",
            f" {record.sensitivity:.1%} of {record.slices} |",
        )
        break  # the first collection beside accuracy; all of them in their own section
    parts = [
        "## Metrics on the group-aware validation split" + (" (split run)" if metadata.training.refit else "") + "\n",
        "Images the model never trained on, with every copy of them (exact, re-contrasted, mirrored) "
        "kept on the validation side" + (where if found else "") + ".\n",
        f"| accuracy | macro-F1 | ECE | ECE after temperature scaling (T={calibration.temperature}) |{other[0]}{beside[0]}",
        f"|---:|---:|---:|---:|{other[1]}{beside[1]}",
        f"| {scores.accuracy:.4f} | {scores.macro_f1:.4f} | {ece_before} | {ece_after} |{other[2]}{beside[2]}\n",
        "| class | precision | recall | F1 | images |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, row in metadata.metrics.validation_per_class.items():
        parts.append(f"| {display_name(label)} | {row.precision:.4f} | {row.recall:.4f} | {row.f1:.4f} | {row.support} |")
    if standalone:
        parts += ["", "![confusion matrix](confusion_matrix.png)\n"]
        if calibration.reliability is not None:  # its figures are the metadata's calibration.reliability
            parts.append(f"![reliability diagram before and after the temperature]({RELIABILITY_FILE})\n")
        parts.append("![training history](history.png)\n")
    return parts


def other_collections_section(metadata: ModelMetadata) -> list[str]:
    """Tumour slices from other collections: does the model call a tumour a tumour wherever the slice came from?"""
    if not metadata.other_collections:
        return []
    parts = [
        "## Tumours from another collection\n",
        "The no-tumour class of the training data came largely from the Br35H collection, but none of Br35H's tumour "
        "slices did, so *looks like Br35H* can be learnt as *no tumour*. Tumour slices (type unknown) from such a "
        "collection show whether the model learnt the tumour or the collection: the share of distinct slices it calls "
        "any tumour class (sensitivity), and which classes it gives them.\n",
        "| collection | distinct slices | called a tumour (per slice) | per image | called no tumour | passed the MRI check |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, record in metadata.other_collections.items():
        passed = "-" if record.mri_check_pass_rate is None else f"{record.mri_check_pass_rate:.1%}"
        parts.append(
            f"| {name} | {record.slices} ({record.images} images) | {record.sensitivity:.1%} | "
            f"{record.sensitivity_per_image:.1%} | {record.called.get('notumor', 0.0):.1%} | {passed} |"
        )
    parts.append("")
    for name, record in metadata.other_collections.items():
        seen = "none of them" if record.seen_in_training == "none" else record.seen_in_training
        parts.append(f"- {name}: seen in training: {seen}. Reproduce: `{record.command}`")
    return [*parts, ""]


STUDY_COLUMNS = (
    "tuning study | trials | minutes, CPU | chosen trial | macro-F1 | map peak on the tumour | "
    "tumour erased, kept (training fill / held-out fills, highest) | control kept (training fill / held-out fills, "
    "lowest) | Br35H held-out, called a tumour | meets the targets | in this folder"
)


def study_row(name: str, study) -> str:
    """One study's row, as the card and the README's table show it (``tests/test_docs.py`` holds them to it)."""
    score = study.score
    kept, control = score.get("held_out_tumour_kept") or {}, score.get("held_out_control_kept") or {}
    highest = f"{max(kept.values()):.1%}" if kept else "n/a"
    lowest = f"{min(control.values()):.1%}" if control else "n/a"
    where = "the chosen recipe" if study.adopted else "as trained, not the chosen recipe"
    return (
        f"| {name} | {study.trials} | {study.minutes:.0f}, {' and '.join(study.cpus)} | {study.chosen} "
        f"| {score['macro_f1']:.4f} | {score['pointing_game']:.1%} | {score['tumour_kept']:.1%} / {highest} "
        f"| {score['control_kept']:.1%} / {lowest} | {score['other_collection']:.1%} "
        f"| {'yes' if study.feasible else 'no'} | {where} |"
    )


def studies_section(metadata: ModelMetadata, standalone: bool = True) -> list[str]:
    """The tuning studies run over this model's recipe (``tumor-ai tune --record-in``): what each found, and whether
    this folder holds its chosen recipe."""
    if not metadata.studies:
        return []
    targets = next(iter(metadata.studies.values())).targets
    parts = [
        "## Tuning studies\n",
        "Optuna studies over this model's recipe (`tumor-ai tune`): validation macro-F1 maximised under the reasons' "
        "and the other collection's targets (map peak on the tumour ≥ {pointing_game:.0%}, tumour erased kept ≤ "
        "{tumour_kept:.0%} and control kept ≥ {control_kept:.0%} with every fill, Br35H held-out slices called a "
        "tumour ≥ {other_collection:.0%}). The chosen trial is the most accurate that meets them all, else the one "
        "that misses them by least; its reasons are measured on the study's validation outlines, not on all of "
        "them as above.\n".format(**targets),
        f"| {STUDY_COLUMNS} |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
        *[study_row(name, study) for name, study in metadata.studies.items()],
        "",
    ]
    for name, study in metadata.studies.items():
        found = ", ".join(f"{key} {value:.2f}" for key, value in study.importances.items()) or "too few trials"
        parts.append(
            f"- {name}: parameter importances (fANOVA): {found}. Report: `{study.report}`. Run: `{study.command}`; "
            f"the chosen trial's flags: `{study.flags}`"
        )
    if standalone:  # each trial's macro-F1 against its reasons and the other collection
        for name in metadata.studies:
            parts += ["", f"![the {name} study's trials]({STUDY_PLOT.format(study=name)})"]
    return [*parts, ""]


def licence_section(metadata: ModelMetadata) -> list[str]:
    """The model's licence, the data's, the credit its architecture's starting weights ask for, and the versions."""
    parts = [
        "## Licence and attribution\n",
        f"Model licence: {metadata.license}. Data: Masoud Nickparvar, Brain Tumor MRI Dataset (Kaggle), CC0, "
        "built from figshare (Cheng et al., 2017), SARTAJ and Br35H.",
    ]
    architecture = architectures.find(metadata.architecture)
    if architecture and architecture.attribution:
        parts.append(architecture.attribution)
    if metadata.libraries:
        parts += ["", "Versions: " + ", ".join(f"{key} {value}" for key, value in metadata.libraries.items())]
    return parts


MRI_CHECK_FAMILIES = {
    "photo": "photos and documents (scikit-image samples)",
    "generated": "generated blank, noise, gradient, text-screenshot and colour pictures",
    "ct": "CT slices at eight display windows (pydicom's three CT test files)",
    "ultrasound": "ultrasound: pydicom's four clips in colour and grey, and drawn fan and linear-probe frames",
    "radiograph": "drawn chest, skull and hand radiographs",
    "other medical": "a Shepp-Logan head phantom and a nuclear-medicine bone scan",
}


def mri_check_section(mri_check: MriCheckRecord | None) -> list[str]:
    """How the not-an-MRI check works, how many validation MRIs it lets through, and what it refuses, per family.

    Its bounds are tabled by ``tumor_ai.core.mri_check.bounds_table``, from the same table that fits and applies them.
    """
    from tumor_ai.core.mri_check import bounds_table

    if not mri_check:
        return []
    bounds = bounds_table(mri_check.bounds)
    refused = f" (refused: {', '.join(mri_check.validation_refused)})" if mri_check.validation_refused else ""
    parts = [
        "## Not-an-MRI check\n",
        f"{mri_check.method}\n",
        *(["An image must meet every fitted bound:\n", *bounds, ""] if bounds else []),
        f"- validation MRIs passing: {mri_check.validation_pass_rate:.2%} of {mri_check.validation_images}{refused}",
    ]
    if not mri_check.families:
        medical = mri_check.medical_non_mri_rejection_rate
        parts.append(
            f"- pictures that are not brain MRI rejected: {mri_check.non_mri_rejection_rate:.2%} of "
            f"{mri_check.non_mri_images}; medical pictures that are not MRI: "
            f"{float('nan') if medical is None else medical:.2%}\n"
        )
        return parts
    parts += [
        "",
        "| pictures that are not brain MRI | count | refused | refused by a fit that never saw their source |",
        "|---|---:|---:|---:|",
    ]
    for family, rates in mri_check.families.items():
        parts.append(
            f"| {MRI_CHECK_FAMILIES.get(family, family)} | {rates.pictures} | {rates.rejected:.0%} | "
            f"{rates.rejected_source_left_out:.0%} |"
        )
    passed = ", ".join(mri_check.non_mri_passed) or "none"
    parts.append(
        f"\nStill passing the fitted check: {passed}. The last column is the honest one for kinds of picture nobody "
        "fitted against; the radiographs and drawn ultrasound frames are simple drawings, not real scans. A DICOM file "
        "that is not MR is refused by its Modality before this check.\n"
    )
    return parts


def conformal_section(metadata: ModelMetadata) -> list[str]:
    """The prediction sets: what they promise, and coverage and size measured on slices they were not calibrated on."""
    block = metadata.conformal
    if not block:
        return []
    method = {"lac": "LAC, score 1 − p(true class)", "aps": "APS without randomisation"}.get(block.method, block.method)
    header = " | ".join(f"{display_name(label)}: coverage, size" for label in metadata.labels)
    lines = [
        "## Prediction sets\n",
        f"Besides its top class the app shows the classes still **plausible at {block.served_level:.0%}**: a "
        f"split-conformal set (`tumor_ai/core/conformal.py`; {method}) that holds the true class in at least that share "
        f"of slices like the {block.calibrated_on} it was calibrated on, whatever the model. A set of one class "
        "is the model sure at that level; three or four is the model unable to tell. A picture the MRI check "
        "refuses gets no set. The guarantee is over all slices, not per class: the columns show where a class "
        "falls short of the level. " + (block.note + ". " if block.note else "") + f"Chosen by {block.rule}.\n",
        f"| level | coverage | average set size | {header} |",
        "|---|---:|---:|" + "---:|" * len(metadata.labels),
    ]
    for level, figures in (block.cross_fit or {}).items():
        per_class = figures.per_class or {}
        cells = " | ".join(
            f"{per_class[label].coverage:.1%}, {per_class[label].set_size:.2f}" for label in metadata.labels if label in per_class
        )
        lines.append(f"| {float(level):.0%} | {figures.coverage:.1%} | {figures.set_size:.2f} | {cells} |")
    for name, levels in (block.compared or {}).items():
        if name != block.method:
            sizes = ", ".join(f"{float(level):.0%}: {value.set_size:.2f}" for level, value in levels.items())
            lines.append(f"\nThe other score, `{name}`, gave average sets of {sizes}.")
    if block.command:
        lines.append(f"\nReproduce: `{block.command}`.")
    return [*lines, ""]


def _interval(figure: Figure, percent: bool = True) -> str:
    """``45% (41–49%)`` or ``0.048 (0.041–0.055)``: a figure with its 95% interval."""
    if percent:
        return f"{figure.value:.0%} ({figure.low:.0%}–{figure.high:.0%})"
    return f"{figure.value:.3f} ({figure.low:.3f}–{figure.high:.3f})"


PREPROCESSING_TEXT = {
    "luminance": ": one channel of luminance with the head's mean brightness brought to 0.5, so neither colour "
    "nor the scanner's overall level, which differ by source collection, reaches the network",
    "rescale_unit": ": RGB divided by 255",
    "vgg16": ": VGG16's own (RGB to BGR, ImageNet channel means subtracted)",
    "vgg16_luminance": ": luminance with the head's mean brightness fixed (at the dataset's median level), repeated "
    "as grey RGB and given VGG16's own mean subtraction, so neither colour nor the scanner's overall level reaches "
    "the network",
}


def recipe_section(arguments: dict, guidance_map: str = "Grad-CAM", features: bool = False) -> list[str]:
    """How training took the collection cues away and made the model need the tumour, when it did.

    ``guidance_map`` names the map the guidance term shaped (the trainer records it); ``features``
    says the trainer cached block-3 features (the VGG16's does).
    """
    steps = []
    if arguments.get("preprocessing") in ("luminance", "vgg16_luminance"):
        steps.append("fed luminance only, each slice brought to the same mean brightness (above)")
    if arguments.get("acquisition"):
        steps.append(
            "trained on slices whose resolution, blur, noise and JPEG quality vary, as they vary between the "
            "source collections (`training/pipeline.py`)"
        )
    if arguments.get("masks"):
        steps.append(
            f"each epoch, {arguments.get('erase', 0):.0%} of the slices with a figshare tumour outline had the tumour "
            "erased (filled from its surroundings: smooth, textured or mirrored from the other side of the head) and "
            + (
                "were taught *not this tumour class* (any class but their own)"
                if arguments.get("erased_label") == "not-class"
                else "were labelled *no tumour*"
            )
            + f", and {arguments.get('control', 0):.0%} of all slices (no-tumour ones too) had "
            "a region of a tumour's size and shape erased elsewhere in the head and kept their label, so that the "
            "erasure itself says nothing "
            "(`training/counterfactuals.py`"
            + ("; the erased and control slices are cached as block-3 features beside the others" if features else "")
            + ")"
        )
    if arguments.get("guidance"):
        steps.append(
            f"a loss term (weight {arguments['guidance']}, from epoch {arguments.get('guidance_from', 0) + 1}) "
            f"penalised the share of the {guidance_map} map outside the outlined tumour (`training/guidance.py`; "
            "Ross et al. 2017, *Right for the right reasons*)"
        )
    if not steps:
        return []
    return [
        "## Trained to need the tumour\n",
        "Most tumour slices of this dataset come from one collection and every no-tumour slice from others, so "
        "a network can score well by telling collections apart. This model was:\n",
        *[f"- {step}" for step in steps],
        "",
    ]


def localisation_summary(metadata: ModelMetadata) -> str:
    """Two sentences, no softening: how often the map points at the tumour, and whether the model needs it."""
    found = metadata.localisation
    if not found:
        return f"Where the {metadata.name} model's map points has not been measured (`tumor-ai localise`)."
    pointing, kept, control = found.pointing_game, found.erased.tumour_kept, found.erased.control_kept
    kept_per_class = kept.per_class or {}
    by_class = ", ".join(
        f"{display_name(label).lower()} {figure.value:.0%}" for label, figure in (pointing.per_class or {}).items()
    )
    kept_by_class = ", ".join(f"{display_name(label).lower()} {figure.value:.0%}" for label, figure in kept_per_class.items())
    text = (
        f"**{metadata.title or metadata.name}**: its map's peak lies on the tumour in {pointing.value:.0%} of held-out "
        f"tumour slices ({by_class}). "
        f"With the tumour erased it still names the tumour class in {kept.value:.0%} of them ({kept_by_class}), "
        f"against {control.value:.0%} when a same-size region elsewhere is erased. "
    )
    unneeded = [_plural(label) for label, figure in kept_per_class.items() if figure.value >= 0.5]
    needed = [_plural(label) for label, figure in kept_per_class.items() if figure.value < 0.5]
    if unneeded:
        text += (
            f"So for {listed(unneeded)} it does **not** need the lesion: it reads something else that comes with "
            f"{'those classes' if len(unneeded) > 1 else 'that class'} in this dataset (the source collection, the slice "
            "level, the framing)"
            + (f"; for {listed(needed)} it does. " if needed else ". ")
            + "Treat the overlay as where this model looked, not as where the tumour is."
        )
    elif pointing.value < 0.75:
        text += "It needs the lesion for most answers, but its map often peaks elsewhere: read the overlay as a rough guide."
    else:
        text += "It needs the lesion for most answers, and its map mostly points at it."
    return text


def _plural(label: str) -> str:
    return display_name(label).lower() + "s"


def localisation_section(metadata: ModelMetadata) -> list[str]:
    """Where the model looks, measured against the tumour outlines, and the tumour-erased test."""
    found = metadata.localisation
    if not found:
        return []
    erased = found.erased
    classes = list(found.pointing_game.per_class or {})
    method = method_name(found.method)
    parts = [
        "## Where the model looks, and whether it needs the tumour\n",
        localisation_summary(metadata) + "\n",
        f"Measured by `tumor-ai localise` on the {found.images} validation images that have a figshare tumour outline "
        f"({found.slices} distinct slices; no-tumour images have none), with the {method} map of the *true* class at "
        f"`{found.layer}` placed over the whole image as the app draws it. In brackets: 95% intervals that resample "
        "whole slices.\n",
        "| measure | all | " + " | ".join(display_name(c) for c in classes) + " |",
        "|---|---:|" + "---:|" * len(classes),
    ]
    rows = [
        ("pointing game: the map's peak within 15 px (at 512 px) of the tumour", found.pointing_game, True),
        ("relevance mass: share of the map inside the tumour", found.relevance_mass, False),
        ("the tumour's share of the image (what an even map would score)", found.mask_share, False),
        ("tumour erased: the tumour class kept", erased.tumour_kept, True),
        ("same-size region elsewhere erased: the class kept", erased.control_kept, True),
        *[
            row
            for style, held in (erased.held_out_fills or {}).items()
            for row in (
                (f"tumour erased by a fill it never trained on ({style}): the tumour class kept", held.tumour_kept, True),
                (f"region elsewhere erased by the {style} fill: the class kept", held.control_kept, True),
            )
        ],
        (
            f"deletion AUC on {found.deletion_auc.images} of them (lower: removing the top pixels first hurts more)",
            found.deletion_auc,
            False,
        ),
        ("insertion AUC on the same (higher: revealing them first helps more)", found.insertion_auc, False),
    ]
    for name, figure, percent in rows:
        per_class = figure.per_class or {}
        cells = [_interval(per_class[c], percent) if c in per_class else "" for c in classes]
        parts.append(f"| {name} | {_interval(figure, percent)} | " + " | ".join(cells) + " |")
    parts += [
        "",
        "The erasure fills the outlined tumour smoothly from its surroundings (`tumor_ai/core/erase.py`, the fill the app's "
        "*Hide a region* uses); the control fills a region of the same shape elsewhere in the head, so an answer that "
        "changes only when the tumour goes shows that the model reads the tumour, not the erasure. "
        + (
            "The held-out fills (each hidden pixel given the nearest visible pixel's grey, and the surroundings "
            "blurred in) are ones no training recipe uses, so a model that learned the training fills as a cue shows "
            "it there. "
            if erased.held_out_fills
            else ""
        )
        + "The outlines are the figshare authors'; some cover only part of a visible lesion, so the pointing game is "
        "a floor.\n",
        *_map_choice(found),
        _border_text(metadata, found),
    ]
    if found.carried_from:
        parts.append(
            f"These figures are the split run's (`{found.carried_from}`), whose validation images these refit weights "
            "trained on; the map served is the split run's choice. They are the published estimate, as the metrics are.\n"
        )
    return parts


def _map_choice(found: LocalisationRecord) -> list[str]:
    """The table of maps compared and the rule that chose the one served."""
    comparison = found.comparison or {}
    if not comparison:
        return []
    lines = [
        "Maps compared (all measured the same way; deletion and insertion on a stratified subset; cost: median ms of the "
        "forward-and-map pass for one slice, in float32, on the machine that measured):\n",
        "| map | pointing game | relevance mass | border mass | deletion AUC | insertion AUC | cost |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in comparison.items():
        method, _, layer = key.partition("@")
        name = f"{method_name(method)} @ `{layer}`"
        if method == found.method and layer == found.layer:
            name = f"**{name} (served)**"
        lines.append(
            f"| {name} | {row.pointing_game:.3f} | {row.relevance_mass:.3f} | {row.border_mass:.3f} "
            f"| {row.deletion_auc:.3f} | {row.insertion_auc:.3f} | {row.cost_ms:.0f} ms |"
        )
    choice = found.choice
    rule = choice.rule if choice else "the localise rule"
    method, _, layer = (choice.served_before if choice else "").partition("@")
    if choice and layer:
        rule = rule.replace(choice.served_before, f"{method_name(method)} @ `{layer}`")
    lines.append(f"\nChosen by the {rule}.")
    score = found.score_cam
    if score:
        lines[-1] += (
            f" Score-CAM at `{score.layer}` pointed at the tumour in {score.pointing_game:.0%} of {score.images} "
            f"slices and took {score.median_seconds:.1f} s per slice (one forward pass per channel): too slow to serve."
        )
    return ["\n".join(lines) + "\n"]


def _border_text(metadata: ModelMetadata, found: LocalisationRecord) -> str:
    """What the map does at the edge of the model's input, in words, with the measured share."""
    share = found.border_mass.value
    text = (
        f"{share:.0%} of the served map's mass lies in the outer tenth of the model's input on each side "
        "(an even map would put 36% there). "
    )
    if metadata.crop == "head":
        text += (
            "This model reads only the square around the head, so its map ends at that square's edge: a hard rectangle "
            "on the overlay is where the model's input stops, not a finding."
        )
    else:
        text += (
            "This model reads the whole image through zero-padded convolutions; where its map lights up in a band along "
            "an edge of the picture, the model drew evidence from that edge (the framing, which differs between the "
            "dataset's collections), not from the tumour."
        )
    return text + "\n"


def _epochs_text(training: TrainingRecord) -> str:
    stages = training.stage_epochs
    if stages:
        return " and ".join(f"{count} {stage.replace('_', '-')} epochs" for stage, count in stages.items())
    return f"{training.refit.epochs if training.refit else '?'} epochs"


def _test_time_flip_text(metadata: ModelMetadata) -> list[str]:
    """A line saying whether serving averages over the mirror image, and what that was worth on validation."""
    choice = metadata.training.test_time_flip
    if not choice:
        return []
    without, with_flip = choice.without, choice.with_flip
    effect = (
        f"validation accuracy {without.accuracy:.4f} without, {with_flip.accuracy:.4f} with; "
        f"NLL {without.nll:.4f} without, {with_flip.nll:.4f} with"
    )
    if metadata.test_time_flip:
        return [f"- Test-time flip: the logits of the slice and its mirror image are averaged ({effect})"]
    return [f"- Test-time flip: not used ({effect}; {choice.rule})"]


def _crop_text(metadata: ModelMetadata) -> str:
    if metadata.crop == "head":
        return "the square around the head (threshold, largest connected component, 4% margin), resized to "
    return ""


def _machine_text(machine: MachineRecord | None) -> str:
    """The words ' on 2 CPU cores' from what the training run recorded (nothing when it recorded nothing)."""
    if not machine:
        return ""
    gpus = machine.gpus
    return f" on {machine.cpu_cores} CPU cores" + (f" and {gpus} GPU{'s' * (gpus > 1)}" if gpus else "")


def _reproduce(metadata: ModelMetadata) -> list[str]:
    """The commands behind the weights and every number on the card, and how long training took."""
    training = metadata.training
    refit = training.refit
    folder = training.out or f"models/{metadata.name}"
    started = training.started_from
    commands = [started.command] if started and started.command else []
    if commands and started.out and started.out != started.of:
        commands.append(f"cp -r {started.out} {started.of}  # the fine-tune below starts from these weights")
    commands += [refit.split_run_command] if refit else []
    commands.append(training.command)
    if metadata.mri_check:
        commands.append(metadata.mri_check.command or f"python -m training.fit_mri_check --model {folder} --data DATA")
    evaluated = refit.of if refit else folder
    commands.append(f"python -m training.evaluate --model {evaluated} --data DATA --subset validation --out report.json")
    throughput = training.throughput
    where = _machine_text(training.machine)
    timing = f"{training.seconds} s{where}"
    if refit:
        timing = f"split run {refit.split_run_seconds} s, refit {training.seconds} s"
        timing += f",{where}" if where else ""
    if started and started.seconds:
        timing += f", after the {started.seconds:.0f} s of the run it started from (`{started.of}`, the first command)"
    if training.precision:
        timing += f", in {training.precision}"
    if throughput:
        timing += f" ({throughput.images_per_second} training images/s, median epoch {throughput.median_epoch_seconds} s)"
    features = training.features
    if features:
        seconds = features.extraction_seconds
        if features.seconds_in_this_run >= seconds / 2:
            timing += f"; that includes computing the cached block-3 features ({seconds:.0f} s), which a refit reuses"
        else:
            timing += (
                f"; the block-3 features it read from the cache took {seconds:.0f} s to compute, in an earlier run on the "
                "same images, size and backbone, and are not included"
            )
    epochs = ", ".join(f"{stage} {count}" for stage, count in (training.epochs_run or {}).items())
    return [
        "## Reproduce\n",
        "```bash",
        *commands,
        "```\n",
        "`DATA` is the training command's `--data` folder"
        + (". The evaluation scores the split run, whose validation images the refit trained on" if refit else "")
        + f". Wall time: {timing}; epochs run: {epochs}.\n",
    ]


def write_model_card(folder: str | Path, repo_id: str | None = None) -> Path:
    """(Re)write ``README.md`` in a model folder from its ``tumor_ai.json``."""
    folder = Path(folder)
    metadata = ModelMetadata.read(folder / METADATA_FILE)
    path = folder / CARD_FILE
    path.write_text(model_card(metadata, repo_id))
    return path
