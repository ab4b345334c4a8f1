"""The demo study on another draw of its world: do its findings hold beyond seed 0?

Writes ``studies/demo-seed<N>.yaml`` — ``studies/demo.yaml`` with the demo world's seed and
the models' build seed set to N (a new world, new people and facts, new pretrained models;
training seeds and everything else as in the demo) — runs it with Snakemake unless
``--no-run``, then checks the demo's findings (``tests/test_demo_findings.py``: full
fine-tuning learns every task, the larger base beats the smaller one, a LoRA rank learns every
task, forgetting and positive transfer, shorter tuned answers) on ``results/demo-seed<N>/``
and prints one line per finding, with the wall time of the run.

    python bench/demo_seed.py --seed 1            # run, then check
    python bench/demo_seed.py --seed 0 --study demo --no-run   # check a finished demo

Exit status 1 when a finding does not hold.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def seeded_study(seed: int) -> tuple[str, Path]:
    """studies/demo-seed<seed>.yaml: the demo study with its world and models drawn from ``seed``."""
    import yaml

    study = yaml.safe_load((ROOT / "studies" / "demo.yaml").read_text())
    name = f"demo-seed{seed}"
    study["study"] = name
    study["description"] = f"{study['description']} World and models from seed {seed}."
    for task in study["tasks"]:
        if task["source"].get("type") == "demo":
            task["source"]["seed"] = seed
    for model in study["models"]:
        if model.get("source") == "build":
            model["build"]["seed"] = seed
    path = ROOT / "studies" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return name, path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--study", help="check this finished study instead (e.g. demo, with --no-run)")
    parser.add_argument("--no-run", action="store_true", help="only check the finished study's findings")
    parser.add_argument("--cores", default="all")
    args = parser.parse_args(argv)

    if args.study:
        study, study_file = args.study, ROOT / "studies" / f"{args.study}.yaml"
    else:
        study, study_file = seeded_study(args.seed)
    if not args.no_run:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", args.cores, "--configfile",
                               str(study_file.relative_to(ROOT))], cwd=ROOT)
        print(f"{study}: snakemake exited with {done.returncode} after {time.perf_counter() - started:.0f} s")
        if done.returncode:
            return done.returncode

    import tests.test_demo_findings as findings
    from ftmatrix import config as cfg
    from ftmatrix.models import load_manifest

    demo = findings.finished_demo(ROOT, cfg.load(ROOT / "config.yaml", [study_file]))
    # The same seed trains different tiny models with different CPU kernels (docs/performance.md,
    # "The demo's findings"): say which ones the study's models were built with.
    manifests = sorted((ROOT / "data" / study / "models").glob("*/manifest.json"))
    kernels = sorted({str((load_manifest(m).provenance.get("device") or {}).get("cpu_capability"))
                      for m in manifests})
    print(f"{study}: models built with CPU kernels {', '.join(kernels) or 'unknown'}")
    failed = 0
    for name in sorted(n for n in dir(findings) if n.startswith("test_")):
        try:
            getattr(findings, name)(demo)
            print(f"holds      {name}")
        except AssertionError as exc:
            failed += 1
            first = (str(exc).splitlines() or [f"{type(exc).__name__} (no message)"])[0]
            print(f"DOES NOT   {name}: {first[:300]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
