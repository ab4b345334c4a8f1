"""A toy task kind written as a study would write one: a module in a folder outside the package.

The module is README's worked example of "Add a task" (yes/no questions read from a local
jsonl), so the README stays true: ``write_kind`` writes it, ``write_rows`` its data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> tuple[str, dict]:
    """README's worked example of "Add a task": the module's source and the study file's entries."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Add a task", 1)[1].split("\n## ", 1)[0]
    module = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    entries = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    return module, entries


YESNO_MODULE, README_ENTRIES = readme_example()


def write_kind(folder: Path, name: str = "yesno.py", source: str = YESNO_MODULE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(source, encoding="utf-8")
    return path


def write_rows(path: Path, n: int, offset: int = 0) -> Path:
    """``n`` yes/no questions about numbers (ids and questions distinct across offsets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(offset, offset + n):
        a, b = i % 17 + 1, (i * 7) % 13 + 1
        rows.append({"id": f"q{i}", "question": f"Question {i}: is {a} greater than {b}?",
                     "answer": "yes" if a > b else "no"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
