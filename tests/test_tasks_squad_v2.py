"""SQuAD v2 task: the official nested JSON and the hub schema read the same; every real row parses."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ftmatrix.errors import DataError
from ftmatrix.tasks import get_task

SQUAD = get_task("squad_v2")


def hub_rows(document):
    """SQuAD's official JSON in the hub's flat schema (rajpurkar/squad_v2)."""
    rows = []
    for article in document["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows.append({"id": qa["id"], "title": article["title"], "context": paragraph["context"],
                             "question": qa["question"],
                             "answers": {"text": [a["text"] for a in qa["answers"]],
                                         "answer_start": [a["answer_start"] for a in qa["answers"]]}})
    return rows


def test_every_half_dev_question_parses(shared_data):
    path = shared_data / "squad_v2" / "dev-v2.0.half.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    examples = SQUAD.to_examples(SQUAD.read_local([str(path)], "squad_json"), str(path))
    assert len(examples) == 6078
    impossible = [e for e in examples if e["reference"]["is_impossible"]]
    assert len(impossible) == 3168
    assert all(e["reference"]["answers"] == [] and e["completion"][0]["content"] == "unanswerable" for e in impossible)
    answerable = [e for e in examples if not e["reference"]["is_impossible"]]
    assert all(e["completion"][0]["content"] == e["reference"]["answers"][0] for e in answerable)
    assert any(len(e["reference"]["answers"]) > 1 for e in answerable)
    assert [e["id"] for e in examples] == [r["id"] for r in hub_rows(document)]


def test_prompt_has_context_question_and_instruction():
    rows = [{"id": "s1", "title": "T", "context": "Paris is in France.", "question": "Where is Paris?",
             "answers": {"text": ["France", "in France"], "answer_start": [12, 9]}}]
    example = SQUAD.to_examples(rows, "mem")[0]
    text = example["prompt"][0]["content"]
    assert text.index("Paris is in France.") < text.index("Where is Paris?")
    assert "short span copied from the context" in text and '"unanswerable"' in text
    assert example["completion"] == [{"role": "assistant", "content": "France"}]
    assert example["reference"] == {"answers": ["France", "in France"], "is_impossible": False}


@pytest.mark.parametrize("fmt", ["hub_jsonl", "hub_parquet"])
def test_hub_schema_files_read_like_the_official_json(shared_data, tmp_path, fmt):
    official = shared_data / "squad_v2" / "dev-v2.0.sample.json"
    rows = hub_rows(json.loads(official.read_text(encoding="utf-8")))
    path = tmp_path / ("dev.jsonl" if fmt == "hub_jsonl" else "dev.parquet")
    if fmt == "hub_jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    assert (SQUAD.to_examples(SQUAD.read_local([str(path)], fmt), str(path))
            == SQUAD.to_examples(SQUAD.read_local([str(official)], "squad_json"), str(official)))


def test_bad_official_json_names_the_question(tmp_path):
    document = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [
        {"context": "c", "qas": [{"id": "a", "question": "q?", "answers": []},
                                 {"id": "b", "answers": [{"text": "c", "answer_start": 0}]}]}]}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(DataError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[1\] \(question 2\): missing field 'question'"):
        SQUAD.read_local([str(path)], "squad_json")


def test_truncated_official_json_is_a_clear_error(shared_data, tmp_path):
    text = (shared_data / "squad_v2" / "dev-v2.0.sample.json").read_text(encoding="utf-8")
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON.*truncated"):
        SQUAD.read_local([str(path)], "squad_json")


def test_not_the_official_layout(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DataError, match="expected SQuAD's official JSON"):
        SQUAD.read_local([str(path)], "squad_json")


def test_answers_of_the_wrong_type(tmp_path):
    row = {"id": "x", "context": "c", "question": "q", "answers": ["c"]}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1: field 'answers' should be an object \(mapping\), got list"):
        SQUAD.to_examples(SQUAD.read_local([str(path)], "hub_jsonl"), str(path))
