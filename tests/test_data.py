"""The duplicate grouping and the group-aware stratified split."""

from __future__ import annotations

import numpy as np

from training.data import load_folder
from training.duplicates import find_duplicate_pairs, group_ids
from training.split import group_split, split_dataset


def test_planted_copies_are_grouped(dataset_dir):
    root, planted = dataset_dir
    dataset = load_folder(root, sizes=[(32, 32)], cache_dir=None)
    groups = group_ids(len(dataset.paths), find_duplicate_pairs(dataset.signatures, dataset.sha256))
    index = {path: i for i, path in enumerate(dataset.paths)}
    for kind, pairs in planted.items():
        for a, b in pairs:
            assert groups[index[a]] == groups[index[b]], f"{kind} copy {a} ~ {b} not grouped"


def test_distinct_slices_are_not_chained(dataset_dir):
    root, _ = dataset_dir
    dataset = load_folder(root, sizes=[], cache_dir=None)
    groups = group_ids(len(dataset.paths), find_duplicate_pairs(dataset.signatures, dataset.sha256))
    assert np.bincount(groups).max() <= 3, "groups chained beyond the planted copies"


def test_split_keeps_groups_whole_and_is_stratified():
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(4), [300, 250, 400, 350])
    groups = np.arange(len(targets))
    for start in range(0, len(targets) - 6, 7):  # plant groups of 1-5 copies within a class
        size = rng.integers(1, 6)
        if len(set(targets[start : start + size])) == 1:
            groups[start : start + size] = start
    train_idx, validation_idx = group_split(targets, groups, 0.2, seed=1)
    assert len(np.intersect1d(train_idx, validation_idx)) == 0
    assert len(train_idx) + len(validation_idx) == len(targets)
    assert not set(groups[train_idx]) & set(groups[validation_idx]), "a group straddles the split"
    for label, count in enumerate(np.bincount(targets)):
        share = (targets[validation_idx] == label).sum() / count
        assert 0.17 <= share <= 0.21, f"class {label} has {share:.2f} in validation"


def test_split_is_seeded():
    targets = np.repeat(np.arange(3), 50)
    groups = np.arange(150) // 2
    first = group_split(targets, groups, 0.2, seed=3)[1]
    assert np.array_equal(first, group_split(targets, groups, 0.2, seed=3)[1])
    assert not np.array_equal(first, group_split(targets, groups, 0.2, seed=4)[1])


def test_split_dataset_on_folder(dataset_dir):
    root, _ = dataset_dir
    dataset = load_folder(root, sizes=[], cache_dir=None)
    train_idx, validation_idx, groups = split_dataset(dataset, 0.25, seed=0)
    assert not set(groups[train_idx]) & set(groups[validation_idx])
    assert set(dataset.targets[validation_idx]) == set(range(4))


def test_unreadable_files_are_reported_and_skipped(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    from PIL import Image

    Image.new("L", (40, 40), 30).save(tmp_path / "a" / "ok.png")
    Image.new("RGBA", (40, 40), (9, 9, 9, 255)).save(tmp_path / "b" / "ok.png")
    (tmp_path / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dataset = load_folder(tmp_path, sizes=[(16, 16)], cache_dir=None)
    assert dataset.paths == ["a/ok.png", "b/ok.png"]
    assert dataset.skipped[0][0] == "b/broken.jpg"
    assert "skipped b/broken.jpg" in capsys.readouterr().out
    assert dataset.images[(16, 16)].shape == (2, 16, 16, 3)


def test_copy_groups_from_scipy_match_a_union_find_and_number_by_first_member():
    from training.duplicates import DuplicatePair, group_ids

    rng = np.random.default_rng(3)
    pairs = [DuplicatePair(int(i), int(j), "near", 0.99, 0) for i, j in rng.integers(0, 60, (40, 2)) if i != j]
    parent = list(range(60))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for pair in pairs:
        a, b = find(pair.i), find(pair.j)
        parent[max(a, b)] = min(a, b)
    expected = np.unique([find(i) for i in range(60)], return_inverse=True)[1]
    np.testing.assert_array_equal(group_ids(60, pairs), expected)


def write_raw_png(path, value: int) -> None:
    """An uncompressed PNG: its byte size depends on its shape only, so other pixels keep the same size."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 40), value, np.uint8)).save(path, compress_level=0)


def test_the_decode_cache_is_keyed_by_content(tmp_path):
    """The same files in a renamed folder hit the cache; an edit that keeps the byte size misses it."""
    import shutil

    first = tmp_path / "data"
    for label, value in (("a", 40), ("b", 90)):
        write_raw_png(first / label / "one.png", value)
    cache = tmp_path / "cache"
    load_folder(first, sizes=[(8, 8)], cache_dir=cache)
    renamed = tmp_path / "data-moved"
    shutil.move(first, renamed)
    again = load_folder(renamed, sizes=[(8, 8)], cache_dir=cache)
    assert len(list(cache.iterdir())) == 1, "the same bytes under a new folder name hit the cache"
    assert again.root == renamed and again.paths == ["a/one.png", "b/one.png"]
    size = (renamed / "b" / "one.png").stat().st_size
    write_raw_png(renamed / "b" / "one.png", 200)
    assert (renamed / "b" / "one.png").stat().st_size == size
    edited = load_folder(renamed, sizes=[(8, 8)], cache_dir=cache)
    assert len(list(cache.iterdir())) == 2, "changed bytes of the same size miss it"
    assert edited.images[(8, 8)][1].min() == 200 and again.images[(8, 8)][1].max() == 90


def test_the_card_names_the_data_from_its_readme_or_the_flags(tmp_path):
    """train.py no longer writes one dataset's name and licence into every model, whatever --data is."""
    from training.data import dataset_identity

    root = tmp_path / "Training"
    root.mkdir()
    assert dataset_identity(root) == dataset_identity(root, None, None)
    assert dataset_identity(root).name == "Training" and dataset_identity(root).license == "unknown"
    (tmp_path / "README.md").write_text("# My scans — Training split\n\nReleased under CC BY 4.0 by the lab.\n")
    found = dataset_identity(root)
    assert (found.name, found.license) == ("My scans — Training split", "CC-BY-4.0")
    (root / "README.md").write_text("# Public domain slices\n\nLicensed CC0: Public Domain.\n")  # the nearer README wins
    assert dataset_identity(root).license == "CC0-1.0"
    assert dataset_identity(root, "Given", "MIT") == type(found)("Given", "MIT")
