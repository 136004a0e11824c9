"""P6: wall time of the embedded demo, `xtuner sweep run sweeps/demo.yaml` (goal <= 3 min fresh, <= 2 min warm).

    python bench/bench_p6_demo.py [--spec sweeps/demo.yaml]

Runs the CLI twice as a user would, in a fresh temporary folder (its own ./mlflow.db and ./xtuner_results):
- fresh: an empty xtuner cache (XTUNER_CACHE -> empty folder: every split is generated and tokenised), a new
  MLflow database, a new local Ray;
- warm: the same command again with --overwrite (tokenisation cache and MLflow database kept).
Wall time is the whole command, Python start-up and imports included. It does not include installing packages
or byte-compiling them (a first import after `pip install` compiles .pyc files; not measured here).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "sweeps" / "demo.yaml"))
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args()
    xtuner = [sys.executable, "-m", "xtuner", "sweep", "run", args.spec]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, XTUNER_CACHE=str(Path(tmp) / "cache"))
        env.pop("RAY_ADDRESS", None)
        for kind, extra in (("fresh", []), ("warm", ["--overwrite"])):
            wall, stdout = run(xtuner + extra, Path(tmp), env)
            finished = re.findall(r"^\[\s*\d+/\d+\] (done|pruned|nonfinite|error)", stdout, flags=re.M)
            out[kind] = {"wall_s": wall, "trials": len(finished),
                         "states": {s: finished.count(s) for s in sorted(set(finished))}}  # fmt: skip
            print(f"{kind}: {wall:.0f} s, {out[kind]['states']}", flush=True)
        print("\n".join(stdout.splitlines()[-40:]))  # the warm run's result tables
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
