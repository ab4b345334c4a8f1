"""Results that show a hand edit: every stage records the sha256 of the files it read and wrote,
and the next stage checks them before it uses a file.

- ``stamp`` adds ``provenance.inputs`` and ``provenance.outputs`` ({path: sha256}) to a stage's
  record (generation.json, metrics.json, train_metrics.json), and, with ``seal``, a digest of
  the record itself (``provenance.digest``), so an edit of the record shows too.
- ``verify_recorded`` checks a file against the hash a record holds for it; ``check_seal`` checks
  a record against its digest. Both raise a DataError that names the file and the command that
  writes it again.
- ``MatrixRecord`` (``results/<study>/matrix.json``, written by aggregate_matrix beside
  matrix.csv): the matrix's own sha256 and those of the cells' metrics and predictions it was
  built from; the analysis, the figures and the journal check them before reading.

The chain: generations.jsonl → generation.json → (score_cell) predictions.jsonl, metrics.json →
(aggregate_matrix) matrix.csv, matrix.json → analysis, figures, journal. A record written before
this existed (no hashes) is read with a warning, not refused.

The commands name the study's files: the workflow puts its ``--config`` values and study files
into ``FTMATRIX_STUDY_ARGS`` when it is parsed (rules/journal.smk), and every job inherits it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterable, Mapping

from ftmatrix.errors import DataError
from ftmatrix.io import file_sha256, read_json, write_json
from ftmatrix.records import Record

log = logging.getLogger("ftmatrix.integrity")

STUDY_ARGS_VARIABLE = "FTMATRIX_STUDY_ARGS"


def format_study_arguments(configfiles=(), config_args=()) -> str:
    """The end of a snakemake command that selects a study: the --config values, then the study
    files in the order they were given (the Snakefile reads config.yaml first, by itself),
    shell-quoted. Both options take several values, so they come last."""
    args = []
    if config_args:
        args += ["--config", *config_args]
    if configfiles:
        args += ["--configfile", *configfiles]
    return "".join(f" {shlex.quote(str(a))}" for a in args)


def study_arguments() -> str:
    """The --config values and study files this run was given, shell-quoted (or nothing)."""
    return os.environ.get(STUDY_ARGS_VARIABLE, "")


def redo_command(rule: str, target: str | Path | None = None) -> str:
    """The command that runs ``rule`` again for ``target`` (one cell's file) or for every target."""
    where = f" {target}" if target is not None else ""
    return f"snakemake --cores all --forcerun {rule}{where}{study_arguments()}"


def regenerate_cell(generations_file: str | Path) -> str:
    return redo_command("evaluate_cell", generations_file)


def rescore_cell(metrics_file: str | Path) -> str:
    return redo_command("score_cell", metrics_file)


def hashes(paths: Iterable[str | Path]) -> dict:
    """{path: sha256} of files; a folder contributes each file under it."""
    out = {}
    for path in paths:
        if not path:
            continue
        path = Path(path)
        if path.is_dir():
            for inner in sorted(p for p in path.rglob("*") if p.is_file()):
                out[str(inner)] = file_sha256(inner)
        elif path.is_file():
            out[str(path)] = file_sha256(path)
    return out


def _canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def digest_of(data: dict) -> str:
    """sha256 of a record's JSON in canonical form, without its own digest."""
    data = json.loads(json.dumps(data, default=str))
    (data.get("provenance") or {}).pop("digest", None)
    return hashlib.sha256(_canonical(data)).hexdigest()


def stamp(record_file: str | Path, *, inputs: Iterable[str | Path] = (), outputs: Iterable[str | Path] = (),
          seal: bool = False) -> dict:
    """Add the sha256 of the files a stage read (``inputs``) and wrote (``outputs``) to its record's
    provenance; with ``seal``, a digest of the whole record too. Returns the record's JSON."""
    data = read_json(record_file)
    prov = data.setdefault("provenance", {})
    prov["inputs"] = hashes(inputs)
    prov["outputs"] = hashes(outputs)
    if seal:
        prov["digest"] = digest_of(data)
    write_json(record_file, data)
    return data


def check_seal(record_file: str | Path, redo: str) -> dict:
    """The record's JSON, after checking it against its digest (a DataError naming the file and
    ``redo`` when it was changed by hand)."""
    data = read_json(record_file)
    recorded = (data.get("provenance") or {}).get("digest") if isinstance(data, dict) else None
    if recorded is None:
        log.warning("%s carries no digest (written by an earlier version); it cannot be checked for edits",
                    record_file)
    elif digest_of(data) != recorded:
        raise DataError(f"{record_file}: changed since the pipeline wrote it (its content no longer matches the "
                        f"digest it was written with); results are not taken from edited files. Write it again: "
                        f"`{redo}`.")
    return data


def verify_recorded(record_file: str | Path, data: dict, path: str | Path, role: str, redo: str) -> None:
    """Check ``path`` against the sha256 that the record (``data``, read from ``record_file``) holds
    for it under ``provenance.<role>`` ('inputs' or 'outputs')."""
    recorded = ((data.get("provenance") or {}).get(role) or {})
    if not recorded:
        log.warning("%s records no file hashes (written by an earlier version); %s is not checked",
                    record_file, path)
        return
    expected = recorded.get(str(path))
    if expected is None:
        raise DataError(f"{record_file}: records no hash for {path}, which it should have {'read' if role == 'inputs' else 'written'}; "
                        f"the files do not belong together. Write them again: `{redo}`.")
    check_file(path, expected, record_file, redo)


def check_file(path: str | Path, expected: str, record_file: str | Path, redo: str) -> None:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing, but {record_file} was built from it. Write it again: `{redo}`.")
    actual = file_sha256(path)
    if actual != expected:
        raise DataError(f"{path}: changed since {record_file} was written from it (sha256 {actual[:16]}…, "
                        f"recorded {expected[:16]}…): edited by hand, truncated or replaced. Results are not "
                        f"taken from it. Write it again: `{redo}`.")


# --------------------------------------------------------------------------- the matrix


@dataclass
class MatrixRecord(Record):
    """What matrix.csv was built from (written by aggregate_matrix beside it)."""

    WHAT: ClassVar[str] = "matrix record"
    WRITTEN_BY: ClassVar[str] = "aggregate_matrix"

    matrix: str                  # the matrix's path
    matrix_sha256: str
    metrics: dict                # {metrics.json path: sha256}
    predictions: dict            # {predictions.jsonl path: sha256}
    provenance: dict


def verify_cells(metrics_files: Iterable[str | Path]) -> tuple[dict, dict]:
    """Check each cell's metrics.json against its digest and its predictions.jsonl against the hash
    metrics.json recorded; returns ({metrics path: sha256}, {predictions path: sha256})."""
    metrics, predictions = {}, {}
    for path in metrics_files:
        path = Path(path)
        redo = rescore_cell(path)
        data = check_seal(path, redo)
        prediction_file = path.with_name("predictions.jsonl")
        verify_recorded(path, data, prediction_file, "outputs", redo)
        metrics[str(path)] = file_sha256(path)
        predictions[str(prediction_file)] = file_sha256(prediction_file)
    return metrics, predictions


def write_matrix_record(record_file: str | Path, matrix_file: str | Path, metrics: Mapping, predictions: Mapping
                        ) -> MatrixRecord:
    from ftmatrix import provenance

    record = MatrixRecord(matrix=str(matrix_file), matrix_sha256=file_sha256(matrix_file), metrics=dict(metrics),
                          predictions=dict(predictions), provenance=provenance.record())
    record.write(record_file)
    return record


def verify_matrix(record_file: str | Path, matrix_file: str | Path, *, predictions_files: Iterable = (),
                  metrics_files: Iterable = ()) -> MatrixRecord:
    """Before the analysis, the figures or the journal read the matrix: it, and the predictions and
    metrics they read beside it, must be the files aggregate_matrix built it from."""
    record = MatrixRecord.read(record_file)
    redo = redo_command("aggregate_matrix")
    check_file(matrix_file, record.matrix_sha256, record_file, redo)
    for role, files, recorded in (("predictions", predictions_files, record.predictions),
                                  ("metrics", metrics_files, record.metrics)):
        for path in files:
            expected = recorded.get(str(path))
            fix = rescore_cell(Path(path).with_name("metrics.json"))
            if expected is None:
                raise DataError(f"{record_file}: the matrix was not built from {path}; rebuild it: `{redo}`.")
            check_file(path, expected, record_file, fix)
    return record


__all__ = ["MatrixRecord", "stamp", "check_seal", "verify_recorded", "verify_cells", "verify_matrix",
           "write_matrix_record", "redo_command", "regenerate_cell", "rescore_cell", "hashes", "digest_of"]
