"""The GPU efficiency benchmark (bench/bench_gpu_mfu.py) runs in its CPU dry-run mode: every option step through the
real Trainer on a tiny shape, with throughput and MFU recorded, so the script is ready when a device is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dry_run_measures_every_step(tmp_path: Path) -> None:
    out = tmp_path / "mfu.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_gpu_mfu.py"), "--dry-run", "--out", str(out),
                           "--steps-only", "base", "fused", "grouped", "workers", "--methods", "finetune",
                           "deep_prompt"], capture_output=True, text=True, timeout=900, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["complete"] and doc["device"] == "cpu" and doc["dry_run"] and doc["peak_measured_tflops"] > 0
    rows = doc["results"]
    assert [(r["method"], r["step"]) for r in rows] == [(m, s) for m in ("finetune", "deep_prompt")
                                                        for s in ("base", "fused", "grouped", "workers")]  # fmt: skip
    for r in rows:
        assert "error" not in r, r.get("error")
        assert r["examples_per_s"] > 0 and r["real_tokens_per_s"] > 0 and 0 < r["mfu"] <= 1
    finetune, prompt = rows[0], rows[4]
    assert finetune["trainable_params"] > 10 * prompt["trainable_params"]  # deep_prompt trains the prefix only
