"""The task registry: kinds are discovered (in the package and in a study's task_modules folders),
each declared in one module with everything about it; unknown kinds are caught when the study is loaded."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest

import ftmatrix.tasks as tasks
from ftmatrix import config as cfg
from ftmatrix.data import prepare_task
from ftmatrix.demo_world import TASK_KINDS as DEMO_KINDS
from ftmatrix.errors import ConfigError, DataError
from ftmatrix.tasks import get_task, metric_display, registry
from tests.toy_task import YESNO_MODULE, write_kind, write_rows

ROOT = Path(__file__).resolve().parents[1]
KINDS = registry().kinds()


@pytest.fixture(autouse=True)
def package_kinds_only():
    """Each test starts and ends with the package's kinds only."""
    tasks.use_config(None)
    yield
    tasks.use_config(None)


def _is_count(name: str) -> bool:
    return name == "total" or name.endswith("_total") or name.startswith("n_")


def example_rows(task) -> list[dict]:
    """The kind's own example row, turned into an example and answered with its completion."""
    assert task.example, f"{task.kind}: TaskKind.example is empty; give one row of the source's schema"
    example = task.to_examples([task.example], f"{task.kind} example")[0]
    gold = example["completion"][0]["content"]
    extracted = task.extract(gold, example["reference"])
    return [{"extracted": extracted, "reference": example["reference"],
             "scores": task.score(extracted, example["reference"])}]


def test_every_module_of_the_package_is_a_registered_kind():
    files = sorted(str(p) for p in tasks.PACKAGE_DIR.glob("*.py") if p.stem not in ("__init__", "base"))
    assert sorted(registry().files.values()) == files
    assert KINDS and all(get_task(kind).kind == kind for kind in KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_a_kind_declares_everything_about_itself(kind):
    task = get_task(kind)
    assert task.headline in task.metrics([])
    rows = example_rows(task)
    metrics = task.metrics(rows)
    assert metrics[task.headline] == 100.0           # its gold completion, extracted and scored: full marks
    shown = [name for name, value in metrics.items() if value is not None and not _is_count(name)]
    assert task.headline in task.display_names
    if task.correctness is not None:                 # a metric of its own, full marks on its gold completion
        assert task.correctness != task.headline and metrics[task.correctness] == 100.0
        assert task.correctness in task.display_names
    assert set(shown) <= set(task.display_names), f"{kind}: metrics without a display name"
    assert {"hub_jsonl", "hub_parquet"} & set(task.formats)


def test_display_names_come_from_the_kinds():
    for kind in KINDS:
        for name, shown in get_task(kind).display_names.items():
            assert metric_display(name, kind) == shown
    assert metric_display("some_new_metric") == "some new metric"


def test_the_journal_and_figures_name_metrics_as_the_kinds_do(tmp_path):
    from ftmatrix.figures import _short_metric
    from ftmatrix.journal import metric_name

    for kind in KINDS:
        for name, shown in get_task(kind).display_names.items():
            assert metric_name(name, kind) == shown
    write_kind(tmp_path / "kinds")
    tasks.use_config({"task_modules": [str(tmp_path / "kinds")]})
    assert metric_name("answer_rate", "yesno") == "answered yes or no"
    matrix = pd.DataFrame([{"eval_task": "yn", "task_kind": "yesno"}])
    assert _short_metric("answer_rate", matrix, "yn") == "answered yes or no"


def test_unknown_kind_names_the_known_ones_and_how_to_add_one():
    with pytest.raises(ConfigError, match="known kinds") as info:
        get_task("no-such-kind")
    assert all(kind in str(info.value) for kind in KINDS) and "task_modules" in str(info.value)


# --- a study's own folder of task modules -------------------------------------------------


def test_a_study_folder_adds_a_kind(tmp_path):
    folder = tmp_path / "kinds"
    write_kind(folder)
    (folder / "_helpers.py").write_text("raise RuntimeError('helpers are not task modules')\n")
    found = registry({"task_modules": [str(folder)]})
    assert set(found.kinds()) == set(KINDS) | {"yesno"}
    assert found.files["yesno"] == str(folder / "yesno.py")
    assert "yesno" not in registry()                  # the package alone does not know it
    tasks.use_config({"task_modules": [str(folder)]})
    task = get_task("yesno")
    assert task.metrics(example_rows(task))["accuracy"] == 100.0
    assert metric_display("accuracy", "yesno") == "yes/no accuracy"


def test_a_kinds_grading_code_covers_its_own_module_and_no_other_kinds(tmp_path):
    """Rule score_cell is keyed on it: an edit of a study's own task module changes its kind's
    fingerprint (its cells are re-scored), and leaves the package kinds' alone."""
    folder = tmp_path / "kinds"
    write_kind(folder)
    config = {"task_modules": [str(folder)]}
    before = {kind: tasks.grading_code(kind, config) for kind in ("yesno", *KINDS)}
    (folder / "yesno.py").write_text((folder / "yesno.py").read_text() + "\n# a grading change\n")
    after = {kind: tasks.grading_code(kind, config) for kind in ("yesno", *KINDS)}
    assert after["yesno"] != before["yesno"]
    assert all(after[kind] == before[kind] for kind in KINDS)
    assert len(set(before.values())) == len(before)      # each kind its own


def test_two_folders_may_hold_files_of_one_name(tmp_path):
    write_kind(tmp_path / "a")
    write_kind(tmp_path / "b", source=YESNO_MODULE.replace('kind="yesno"', 'kind="yesno2"'))
    found = registry({"task_modules": [str(tmp_path / "a"), str(tmp_path / "b")]})
    assert {"yesno", "yesno2"} <= set(found.kinds())
    assert found.get("yesno") is not found.get("yesno2")


def test_one_kind_in_two_modules_names_both_files(tmp_path):
    write_kind(tmp_path / "a")
    write_kind(tmp_path / "b", name="other.py")
    with pytest.raises(ConfigError, match="declared twice") as info:
        registry({"task_modules": [str(tmp_path / "a"), str(tmp_path / "b")]})
    assert str(tmp_path / "a" / "yesno.py") in str(info.value) and str(tmp_path / "b" / "other.py") in str(info.value)
    write_kind(tmp_path / "c", name="arc_again.py", source=YESNO_MODULE.replace('kind="yesno"', 'kind="arc"'))
    if "arc" in KINDS:
        with pytest.raises(ConfigError, match="declared twice"):
            registry({"task_modules": [str(tmp_path / "c")]})


@pytest.mark.parametrize("source, message", [
    ("X = 1\n", "defines no TASK"),
    ("TASK = 3\n", "not a TaskKind"),
    ("import no_such_module_anywhere\n", "failed to load"),
    (YESNO_MODULE.replace('kind="yesno"', 'kind="Yes No"'), "not a safe name"),
    (YESNO_MODULE.replace('kind="yesno",', 'kind="yesno", correctness="acuracy",'),
     "TASK.correctness is 'acuracy', which its metrics do not report"),
])
def test_a_broken_module_is_named(tmp_path, source, message):
    path = write_kind(tmp_path / "kinds", name="broken.py", source=source)
    with pytest.raises(ConfigError, match=message) as info:
        registry({"task_modules": [str(tmp_path / "kinds")]})
    assert str(path) in str(info.value)


# --- the study configuration --------------------------------------------------------------


def demo_study() -> dict:
    config = cfg.read_yaml(ROOT / "config.yaml")
    return cfg.merge(config, cfg.read_yaml(ROOT / "studies" / "demo.yaml"))


def test_an_unknown_kind_stops_the_study(tmp_path):
    config = demo_study()
    config["tasks"][1]["kind"] = "yesno"
    with pytest.raises(ConfigError) as info:
        cfg.validate(config)
    message = str(info.value)
    assert "tasks[1].kind is 'yesno'" in message and "known kinds" in message and "task_modules" in message


def test_a_kind_from_the_study_folder_is_accepted(tmp_path):
    write_kind(tmp_path / "kinds")
    write_rows(tmp_path / "train.jsonl", 10)
    config = demo_study()
    config["task_modules"] = [str(tmp_path / "kinds")]
    config["tasks"] = [{"name": "yesno", "kind": "yesno",
                        "source": {"type": "local", "format": "hub_jsonl", "train": str(tmp_path / "train.jsonl")}}]
    assert cfg.validate(config)["tasks"][0]["kind"] == "yesno"
    bad = copy.deepcopy(config)
    bad["tasks"][0]["source"]["format"] = "squad_json"
    with pytest.raises(ConfigError, match=r"tasks\[0\].source.format is 'squad_json'.*it reads: hub_jsonl"):
        cfg.validate(bad)
    write_kind(tmp_path / "more-kinds", name="yesno_again.py")
    bad = copy.deepcopy(config)
    bad["task_modules"].append(str(tmp_path / "more-kinds"))
    with pytest.raises(ConfigError, match="task kind 'yesno' is declared twice"):
        cfg.validate(bad)
    bad = copy.deepcopy(config)
    bad["task_modules"] = [str(tmp_path / "missing")]
    with pytest.raises(ConfigError, match=r"task_modules\[0\] is .*missing, which is not a folder"):
        cfg.validate(bad)


LOCAL = {"type": "local", "format": "hub_jsonl", "train": "train.jsonl", "eval": "eval.jsonl"}


def filled_entry(tmp_path, entry: dict) -> dict:
    """A task entry as the data stage gets it: validated, every default filled in."""
    config = demo_study()
    config["task_modules"] = [str(tmp_path / "kinds")]
    config["tasks"] = [entry]
    return cfg.validate(config)["tasks"][0]


def test_a_demo_source_names_the_demo_worlds_kinds(tmp_path):
    write_kind(tmp_path / "kinds")
    config = demo_study()
    config["task_modules"] = [str(tmp_path / "kinds")]
    config["tasks"] = [{"name": "yesno", "kind": "yesno", "source": {"type": "demo", "seed": 0}}]
    with pytest.raises(ConfigError) as info:
        cfg.validate(config)
    assert "the demo world has no task of kind 'yesno'" in str(info.value)
    assert all(kind in str(info.value) for kind in DEMO_KINDS)
    # and the data stage says the same when it gets such a task anyway
    tasks.use_config({"task_modules": [str(tmp_path / "kinds")]})
    entry = {**filled_entry(tmp_path, {"name": "yesno", "kind": "yesno", "source": LOCAL}), "source": {"type": "demo", "seed": 0}}
    with pytest.raises(DataError, match="the demo world has no task of kind 'yesno'; it has " + ", ".join(DEMO_KINDS)):
        prepare_task(entry, tmp_path / "out", data_seed=0, root=tmp_path, demo_dir=tmp_path / "demo")


def test_the_data_stage_reads_a_study_kind(tmp_path):
    write_kind(tmp_path / "kinds")
    write_rows(tmp_path / "train.jsonl", 200)      # room for the training rows and a validation set
    write_rows(tmp_path / "eval.jsonl", 4, offset=1000)
    tasks.use_config({"task_modules": [str(tmp_path / "kinds")]})
    entry = filled_entry(tmp_path, {"name": "yesno", "kind": "yesno", "train_size": 8, "eval_size": 4, "source": LOCAL})
    prepare_task(entry, tmp_path / "out", data_seed=0, root=tmp_path)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["kind"] == "yesno" and meta["counts"]["eval"]["written"] == 4
    assert json.loads((tmp_path / "out" / "eval.jsonl").read_text().splitlines()[0])["prompt"][0]["content"] \
        .endswith("Answer yes or no.")
