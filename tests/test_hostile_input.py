"""Hostile input, round two: text from files never becomes markup or a formula, a lost guard is loud, a kill leaves nothing."""

from __future__ import annotations

import csv
import html
import io
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from tumor_ai.core.batch import iter_inputs, member_name, rows_to_csv
from tumor_ai.core.safe_text import csv_cell, from_csv_cell, markdown, plain

HOSTILE = [
    '<form action="http://evil.example/x"><input name=q></form>',
    '<img src="http://evil.example/p.png">',
    "<a href='http://evil.example'>click</a>",
    "<h1>result: glioma 99%</h1>",
    "![i](http://evil.example/x.png) [link](http://evil.example) **b**",
    "# heading\n## another",
    "`code` _em_ ~~strike~~ | table | <script>alert(1)</script>",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_user_text_renders_as_literal_characters(text):
    from markdown_it import MarkdownIt  # CommonMark with raw HTML on, as gr.Markdown renders it

    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough").render(markdown(text))
    from html.parser import HTMLParser

    class Elements(HTMLParser):
        found: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.found.append(tag)

    parser = Elements()
    parser.found = []
    parser.feed(rendered)
    assert set(parser.found) <= {"p", "br"}, rendered
    shown = html.unescape(rendered.removeprefix("<p>").removesuffix("</p>\n"))
    assert shown == plain(text), "every character the file gave is shown as itself"


def test_names_lose_bidirectional_overrides_and_control_characters():
    assert plain("gpj.\u202eexe.png") == "gpj.exe.png"
    assert plain("a\nb\rc\x00d") == "a b c d"


@pytest.mark.parametrize(
    "name", ['=HYPERLINK("http://x","y").jpg', "+cmd|' /C calc'!A0.png", "-2+3.png", "@SUM(1).png", " =1+1.png"]
)
def test_csv_cells_that_look_like_formulas_stay_text(name):
    cell = csv_cell(name)
    assert cell.startswith("'") and from_csv_cell(cell) == plain(name)
    assert csv_cell("glioma.jpg") == "glioma.jpg" and csv_cell(0.5) == 0.5
    text = rows_to_csv([{"file": name, "cnn class": "glioma"}])
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["file"].startswith("'")


def test_zip_member_names_keep_every_part_so_two_members_never_share_a_name(tmp_path):
    assert member_name("../a.png") == "../a.png" and member_name("C:/a.png") == "C:/a.png"
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("../a.png", b"x")
        handle.writestr("a.png", b"x")
        handle.writestr("b\u202egnp.png", b"x")
    names = [name for name, _ in iter_inputs([archive])]
    assert len(set(names)) == 3 and not any("\u202e" in name for name in names)


def test_a_model_without_its_mri_check_is_refused_unless_the_operator_allows_it(slot_models, slot_predictors):
    from tumor_ai.app.ui import build_app
    from tumor_ai.core.inference import load_predictors
    from tumor_ai.model.metadata import ModelSourceError

    with pytest.raises(ModelSourceError, match=r"has no not-an-MRI check .* --allow-no-mri-check"):
        load_predictors({"cnn": str(slot_models["cnn"])})
    predictors, _, _ = load_predictors({"cnn": str(slot_models["cnn"])}, require_mri_check=False)
    app = build_app({**predictors, "vgg16": slot_predictors["vgg16"]})
    texts = [str(component.get("props", {}).get("value")) for component in app.config["components"]]
    assert any("The not-an-MRI check is off for cnn and vgg16" in text for text in texts), "a banner says so"


def test_a_killed_apps_folder_is_removed_by_the_next_start(tmp_path):
    from tumor_ai.app.workspace import OWNER_FILE, PREFIX, process_identity, remove_stale_workspaces

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    code = "from tumor_ai.app.workspace import open_workspace; open_workspace(60, 60); import time; time.sleep(300)"
    child = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    deadline = time.time() + 60
    while not list(tmp_path.glob(f"{PREFIX}*/{OWNER_FILE}")) and time.time() < deadline:
        time.sleep(0.2)
    folder = next(tmp_path.glob(f"{PREFIX}*"))
    (folder / "gradio" / "upload.png").write_bytes(b"a patient's slice")
    assert remove_stale_workspaces(tmp_path) == 0, "a running app's folder stays"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert folder.exists(), "kill -9 runs no clean-up"
    mine = tmp_path / f"{PREFIX}live"
    mine.mkdir()
    (mine / OWNER_FILE).write_text(process_identity(os.getpid()))
    assert remove_stale_workspaces(tmp_path) == 1
    assert not folder.exists() and mine.exists()


def test_the_sweep_spares_a_file_a_running_event_reads(tmp_path):
    from tumor_ai.app.workspace import in_use, sweep

    old = [tmp_path / "batch" / f"{index}.jpg" for index in range(3)]
    for path in old:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"slice")
    with in_use([str(old[0]), str(old[1])]), in_use([str(old[1])]):
        assert sweep(tmp_path, age=-1) == 1, "only the file no event reads goes"
        assert old[0].exists() and old[1].exists() and not old[2].exists()
    assert sweep(tmp_path, age=-1) == 2 and not any(path.exists() for path in old), "once the event ends, the sweep takes them"
    assert not (tmp_path / "batch").exists()


def test_the_sweep_is_a_setting_and_a_bad_value_is_one_sentence(monkeypatch, capsys):
    from tumor_ai.app.serve import parse_args

    monkeypatch.setenv("TUMOR_AI_SWEEP_EVERY", "5")
    args = parse_args(["--sweep-age", "7"])
    assert (args.sweep_every, args.sweep_age) == (5, 7)
    monkeypatch.setenv("TUMOR_AI_SWEEP_AGE", "soon")
    with pytest.raises(SystemExit):
        parse_args([])
    assert "'soon' is not a whole number of seconds" in capsys.readouterr().err


def test_large_decodes_take_turns_and_small_ones_never_wait():
    import threading

    from tumor_ai.core.imaging import DECODE_BUDGET, DECODE_SIDE, decoding_share

    inside, most = [0], [0]
    lock = threading.Lock()

    def large() -> None:
        with decoding_share(DECODE_BUDGET // 2 + 1):  # two never fit together
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=large) for _ in range(6)]
    for thread in threads:
        thread.start()
    with decoding_share(DECODE_SIDE**2):  # a slice-sized decode goes straight in, whatever is waiting
        pass
    for thread in threads:
        thread.join()
    assert most[0] == 1
