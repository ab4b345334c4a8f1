"""The smaller guards of results you can trust: spreadsheet formulas escaped in matrix.csv (and
read back as written), secrets masked, shareable file modes, rows that could never be scored
right refused at data time, and the chain of hashes from generations to the matrix."""

from __future__ import annotations

import csv
import io as io_text
import json
import os

import pytest

from ftmatrix import integrity, io
from ftmatrix.aggregate import IDENTITY_COLUMNS, QUALITY_COLUMNS, read_matrix, to_csv
from ftmatrix.errors import DataError
from ftmatrix.redaction import redact, redact_value
from ftmatrix.tasks import get_task


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "'quoted", "\tx", "plain"])
def test_matrix_text_cells_a_spreadsheet_would_run_are_escaped_and_read_back_as_written(tmp_path, text):
    header = IDENTITY_COLUMNS + QUALITY_COLUMNS
    row = {column: "x" for column in header}
    row.update(label=text, n=3, headline=-4.25)
    written = to_csv([row], header)
    cells = dict(zip(header, next(csv.reader(io_text.StringIO(written.splitlines()[1])))))
    assert cells["label"] == (text if text == "plain" else f"'{text}")
    assert cells["headline"] == "-4.25"
    path = tmp_path / "matrix.csv"
    path.write_text(written)
    frame = read_matrix(path)
    assert frame["label"][0] == text
    assert frame["headline"][0] == -4.25                       # numbers are never escaped


@pytest.mark.parametrize("secret, masked", [
    ("ghp_" + "a1B2" * 9, "gh*_***"),
    ("github_pat_11ABCDEFG0" + "x" * 60, "github_pat_***"),
    ("hf_" + "Q" * 30, "hf_***"),
    ("https://alice:s3cret-pass@example.org/data.json", "https://alice:***@example.org/data.json"),
])
def test_tokens_and_url_passwords_are_masked(secret, masked):
    text = f"Data from {secret} (see README)."
    assert redact(text) == f"Data from {masked} (see README)."
    assert redact_value({"a": [text], "b": 3}) == {"a": [f"Data from {masked} (see README)."], "b": 3}
    from ftmatrix.journal import redact as journal_redact

    assert journal_redact(text) == redact(text)


def test_a_plain_url_and_ordinary_text_are_left_alone():
    text = "https://huggingface.co/datasets/rajpurkar/squad_v2 at ghp rev sk-1"
    assert redact(text) == text


def test_model_folders_are_shareable_whatever_the_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        staging = tmp_path / "staging"
        (staging / "sub").mkdir(parents=True)
        (staging / "model.safetensors").write_bytes(b"x")
        (staging / "sub" / "a.json").write_text("{}")
        io.replace_dir(staging, tmp_path / "model")
    finally:
        os.umask(previous)
    model = tmp_path / "model"
    assert oct(model.stat().st_mode & 0o777) == oct(0o755)
    assert oct((model / "sub").stat().st_mode & 0o777) == oct(0o755)
    assert oct((model / "model.safetensors").stat().st_mode & 0o777) == oct(0o644)
    assert oct((model / "sub" / "a.json").stat().st_mode & 0o777) == oct(0o644)


def squad_row(answer: str, context: str = "The river Thames flows through London.") -> dict:
    return {"id": "s1", "title": "t", "context": context, "question": "Which river?",
            "answers": {"text": [answer], "answer_start": [4]}, "_where": "squad.jsonl, line 7"}


def test_a_squad_answer_that_is_not_in_its_context_is_refused_with_the_row():
    task = get_task("squad_v2")
    assert task.to_examples([squad_row("river Thames")], "squad.jsonl")[0]["completion"][0]["content"] == "river Thames"
    with pytest.raises(DataError, match=r"squad\.jsonl, line 7: answers\.text\[0\] 'Danube' is not a span of"):
        task.to_examples([squad_row("Danube")], "squad.jsonl")


@pytest.mark.parametrize("labels, key", [(["A", "B", "C", "10"], "10"), (["True", "False"], "True"),
                                         (["A", "B", "C", "10"], "A")])
def test_arc_labels_the_extractor_cannot_read_are_refused_with_the_row(labels, key):
    task = get_task("arc")
    row = {"id": "a1", "question": "Q?", "choices": {"text": [f"c{i}" for i in range(len(labels))], "label": labels},
           "answerKey": key, "_where": "arc.jsonl, line 3"}
    with pytest.raises(DataError, match=r"arc\.jsonl, line 3: the choice label '(10|True)'"):
        task.to_examples([row], "arc.jsonl")


def test_arc_rows_with_digit_labels_are_read():
    task = get_task("arc")
    row = {"id": "a1", "question": "Q?", "choices": {"text": ["w", "x", "y", "z"], "label": ["1", "2", "3", "4"]},
           "answerKey": "3"}
    assert task.to_examples([row], "arc.jsonl")[0]["reference"]["label"] == "3"


# ------------------------------------------------------------------ the chain of hashes


def sealed_cell(tmp_path):
    cell = tmp_path / "results" / "s" / "eval" / "c"
    io.write_jsonl(cell / "predictions.jsonl", [{"id": "1", "scores": {"em": 100.0}}])
    io.write_json(cell / "metrics.json", {"headline": {"value": 100.0}, "provenance": {}})
    integrity.stamp(cell / "metrics.json", inputs=[], outputs=[cell / "predictions.jsonl"], seal=True)
    return cell


def test_a_sealed_record_reads_back_and_an_edit_is_named_with_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv(integrity.STUDY_ARGS_VARIABLE, " --configfile studies/x.yaml")
    cell = sealed_cell(tmp_path)
    metrics, predictions = integrity.verify_cells([cell / "metrics.json"])
    assert set(predictions) == {str(cell / "predictions.jsonl")}
    data = json.loads((cell / "metrics.json").read_text())
    data["headline"]["value"] = 99.0
    (cell / "metrics.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"metrics\.json: changed since the pipeline wrote it.*`snakemake --cores all "
                                        r"--forcerun score_cell .*metrics\.json --configfile studies/x\.yaml`"):
        integrity.verify_cells([cell / "metrics.json"])


def test_predictions_edited_after_scoring_are_refused(tmp_path):
    cell = sealed_cell(tmp_path)
    io.write_jsonl(cell / "predictions.jsonl", [{"id": "1", "scores": {"em": 0.0}}])
    with pytest.raises(DataError, match=r"predictions\.jsonl: changed since .*metrics\.json was written from it"):
        integrity.verify_cells([cell / "metrics.json"])


def test_the_matrix_record_catches_an_edited_matrix_and_edited_predictions(tmp_path):
    cell = sealed_cell(tmp_path)
    metrics, predictions = integrity.verify_cells([cell / "metrics.json"])
    matrix = tmp_path / "matrix.csv"
    matrix.write_text("cell,headline\nc,100.0\n")
    integrity.write_matrix_record(tmp_path / "matrix.json", matrix, metrics, predictions)
    integrity.verify_matrix(tmp_path / "matrix.json", matrix, predictions_files=[cell / "predictions.jsonl"])
    matrix.write_text("cell,headline\nc,99.0\n")
    with pytest.raises(DataError, match=r"matrix\.csv: changed since .*matrix\.json was written from it.*"
                                        r"--forcerun aggregate_matrix"):
        integrity.verify_matrix(tmp_path / "matrix.json", matrix)


def test_a_record_of_an_earlier_version_is_read_with_a_warning(tmp_path, caplog):
    io.write_json(tmp_path / "metrics.json", {"provenance": {}})
    integrity.check_seal(tmp_path / "metrics.json", "redo")
    assert "carries no digest" in caplog.text
