"""Duplicate and leakage report for an image dataset, or for a train folder against a test folder.

    python -m training.audit --data ../shared/data/brain-tumor-mri/Training --out audit.csv
    python -m training.audit --data Training --test Testing --out leakage.csv

It finds exact copies (same bytes), pixel copies (same pixels, other file), near copies
(re-contrasted, sharpened, re-encoded), left-right mirrored copies and "similar" images (mostly
neighbouring slices of one patient) with the same signatures that ``training.data`` groups by,
then reports cross-label conflicts (one copied slice filed under two classes) and, with
``--test``, the test images that also stand in the training folder. One CSV row per pair; a
summary is printed.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

import numpy as np

from .data import class_folders, load_folder
from .duplicates import find_duplicate_pairs, group_ids

FIELDS = ["kind", "scope", "path_a", "label_a", "path_b", "label_b", "correlation", "hash_distance", "label_conflict"]


def audit(data: str, test: str | None = None, cache_dir: str | None = ".cache/data") -> tuple[list[dict], dict]:
    """Pairs of copies as CSV rows, and a summary dict."""
    train = load_folder(data, sizes=[], cache_dir=cache_dir)
    rows = []
    within = find_duplicate_pairs(train.signatures, train.sha256)
    for pair in within:
        rows.append(_row(pair, "within", train, train))
    groups = group_ids(len(train.paths), within)
    sizes = np.bincount(groups)
    conflicts = {int(g) for g in np.unique(groups) if len(set(train.targets[groups == g])) > 1}
    summary = {
        "images": len(train.paths),
        "unreadable": len(train.skipped),
        "groups": int(len(sizes)),
        "images_with_a_copy": int(sizes[sizes > 1].sum()),
        "largest_group": int(sizes.max()) if len(sizes) else 0,
        "pairs": dict(Counter(pair.kind for pair in within)),
        "cross_label_groups": len(conflicts),
        "cross_label_pairs": sum(row["label_conflict"] for row in rows),
    }
    if test:
        test_set = load_folder(test, sizes=[], labels=class_folders(test), cache_dir=cache_dir)
        across = find_duplicate_pairs(test_set.signatures, test_set.sha256, train.signatures, train.sha256)
        for pair in across:
            rows.append(_row(pair, "test-train", test_set, train))
        leaked = {pair.i for pair in across}
        summary.update(
            {
                "test_images": len(test_set.paths),
                "test_images_also_in_train": len(leaked),
                "test_leak_fraction": round(len(leaked) / max(len(test_set.paths), 1), 4),
                "test_train_pairs": dict(Counter(pair.kind for pair in across)),
                "test_train_label_conflicts": sum(row["label_conflict"] for row in rows if row["scope"] == "test-train"),
            }
        )
    return rows, summary


def _row(pair, scope: str, set_a, set_b) -> dict:
    label_a = set_a.labels[set_a.targets[pair.i]]
    label_b = set_b.labels[set_b.targets[pair.j]]
    return {
        "kind": pair.kind,
        "scope": scope,
        "path_a": set_a.paths[pair.i],
        "label_a": label_a,
        "path_b": set_b.paths[pair.j],
        "label_b": label_b,
        "correlation": round(pair.correlation, 4),
        "hash_distance": pair.hash_distance,
        "label_conflict": label_a != label_b and pair.kind != "similar",
    }


def write_csv(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def print_summary(summary: dict, rows: list[dict]) -> None:
    print(
        f"{summary['images']} images ({summary['unreadable']} unreadable) form {summary['groups']} groups of copies; "
        f"{summary['images_with_a_copy']} images have at least one copy; the largest group has {summary['largest_group']}."
    )
    pairs = summary["pairs"]
    print("copy pairs: " + ", ".join(f"{pairs.get(kind, 0)} {kind}" for kind in ("exact", "pixel", "near", "mirror", "similar")))
    print(
        f"cross-label conflicts: {summary['cross_label_pairs']} copied slices filed under two classes; "
        f"{summary['cross_label_groups']} groups mix classes once similar images are linked too"
    )
    for row in [row for row in rows if row["label_conflict"] and row["scope"] == "within"][:10]:
        print(f"  {row['path_a']} = {row['path_b']} ({row['kind']}, r={row['correlation']})")
    if "test_images" in summary:
        print(
            f"test images also in train: {summary['test_images_also_in_train']} of {summary['test_images']} "
            f"({summary['test_leak_fraction']:.1%}); label conflicts across: {summary['test_train_label_conflicts']}"
        )


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Run the command; ``prog`` is the name its ``--help`` shows (``tumor-ai NAME`` under that entry point)."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m training.audit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="dataset folder (<class>/ sub-folders)")
    parser.add_argument("--test", help="optional test folder to check for images that also stand in --data")
    parser.add_argument("--out", default="audit.csv", help="CSV with one row per copy pair (default audit.csv)")
    args = parser.parse_args(argv)
    rows, summary = audit(args.data, args.test)
    write_csv(rows, args.out)
    print_summary(summary, rows)
    print(f"wrote {len(rows)} pairs to {args.out}")


if __name__ == "__main__":
    main()
