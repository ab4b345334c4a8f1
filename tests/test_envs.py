"""The per-stage conda environments: they parse, every rule names one, pins agree with the lock."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_norm(name)] = version.strip()
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_there_is_an_environment_per_stage():
    assert {p.stem for p in ENVS} >= {"data", "train", "evaluate", "report"}


@pytest.mark.parametrize("env", ENVS, ids=[p.stem for p in ENVS])
def test_environment_parses_and_pins_agree_with_the_lock(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["channels"], f"{env.name}: no channels"
    deps = spec["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    lock = _lock()
    assert pip, f"{env.name}: empty pip section"
    for requirement in pip:
        name, sep, version = requirement.partition("==")
        assert sep, f"{env.name}: {requirement!r} is not pinned exactly (name==version)"
        assert _norm(name) in lock, f"{env.name}: {name} is not in requirements.lock"
        assert lock[_norm(name)] == version, (
            f"{env.name}: {name}=={version} but requirements.lock pins {lock[_norm(name)]}")


def test_every_rule_that_runs_code_names_an_environment():
    """Each rule with a script names a conda env file that exists."""
    # Reading the rules' text is enough and cheap: every `script:` rule has a `conda:` line.
    missing = []
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        for block in re.split(r"\n(?=rule |checkpoint )", text):
            header = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if not header or "script:" not in block:
                continue
            conda = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            if not conda:
                missing.append(f"{smk.name}:{header.group(1)}")
                continue
            assert (smk.parent / conda.group(1)).resolve().is_file(), f"{header.group(1)}: {conda.group(1)} missing"
    assert not missing, f"rules without a conda environment: {missing}"
