"""Small file helpers: atomic writes (a killed job never leaves a complete-looking file)
and JSON-lines reading whose errors name the file, the line and what to do."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from ftmatrix.errors import DataError, FtmatrixError


def _describe_os_error(path: Path, exc: OSError) -> str:
    import errno

    if exc.errno == errno.ENOSPC:
        return f"{path}: the disk is full (no space left on device); free space and run again."
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path}: cannot write here ({exc.strerror}); make the folder writable and run again."
    return f"{path}: {exc.strerror or exc}."


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise FtmatrixError(_describe_os_error(path, exc)) from None
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o644)  # mkstemp makes files private; results are ordinary files
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FtmatrixError(_describe_os_error(path, exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False, default=str) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
    return n


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); "
                        f"the file may be truncated — recreate it.") from None


def read_jsonl(path: str | Path, *, allow_truncated_tail: bool = False) -> list[dict]:
    """Read a JSON-lines file; each row must be a JSON object.

    ``allow_truncated_tail`` drops a last line cut short by a kill (used when resuming
    an append-only file); anywhere else a bad line is an error naming file and line.
    """
    path = Path(path)
    rows = []
    try:
        with open(path, "rb") as fh:
            raw_lines = fh.read().split(b"\n")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
        complete_tail = True
    else:
        complete_tail = False
    for number, raw in enumerate(raw_lines, start=1):
        last = number == len(raw_lines)
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}, line {number}: not UTF-8 text (byte {exc.start}); "
                            f"re-save the file as UTF-8.") from None
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if allow_truncated_tail and last and not complete_tail:
                break
            raise DataError(f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                            f"the file may be truncated or corrupted — fix or recreate it.") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object per line, got {type(row).__name__}.")
        rows.append(row)
    return rows


def file_sha256(path: str | Path, length: int = 64) -> str:
    """The sha256 of a file's bytes in hex, read in chunks; ``length`` keeps its first characters
    (16 for the short fingerprints written into provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def share_modes(folder: str | Path) -> None:
    """Folders 0755 and files 0644 under ``folder``, whatever the umask or mkdtemp's 0700: results
    (trained weights included) are readable to the group and others on a shared cluster."""
    folder = Path(folder)
    os.chmod(folder, 0o755)
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def replace_dir(src: str | Path, dst: str | Path) -> None:
    """Move a finished folder into place, replacing any old one (the last step of a job); its
    files get the modes of ``share_modes``."""
    src, dst = Path(src), Path(dst)
    share_modes(src)
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
