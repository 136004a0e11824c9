"""Validating a sweep (every setting of every trial, method settings included) and its dry run load neither torch
nor transformers nor peft: the method settings models are torch-free (`xtuner.methods._base`), the model code loads
when a model is built. Checked in a fresh interpreter, since this test process has torch loaded already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "peft", "sklearn", "ray", "mlflow")

SCRIPT = r"""
import contextlib, io, json, sys
from xtuner.errors import XtunerError
from xtuner.sweep.runner import load_plan
from xtuner.methods import get_method, method_names, validate_settings
out = {}
out["demo_trials"] = load_plan(sys.argv[1] + "/sweeps/demo.yaml").n_trials
out["paper_trials"] = load_plan(sys.argv[1] + "/sweeps/paper.yaml").n_trials
bad = {"name": "bad", "model": "builtin:tiny-xlmr", "tasks": ["synth-xnli"], "methods": {"finetune": {"lr": 1e-3, "psl": 16}}}
try:
    load_plan(bad)
except XtunerError as e:
    out["bad"] = str(e)
try:
    validate_settings("deep_prompt", {"psl": 0})
except XtunerError as e:
    out["bad_psl"] = str(e)
out["methods"] = method_names()
out["deep_prompt_settings"] = get_method("deep_prompt").setting_names()
o = io.StringIO()
with contextlib.redirect_stdout(o):
    from xtuner.cli import main
    out["dry_run_rc"] = main(["sweep", "run", sys.argv[1] + "/sweeps/demo.yaml", "--dry-run"])
out["loaded"] = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
print(json.dumps(out))
"""


def test_validating_a_sweep_loads_no_torch(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT), json.dumps(HEAVY)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert out["demo_trials"] == 16 and out["paper_trials"] == 60 and out["dry_run_rc"] == 0
    assert "methods.finetune.psl" in out["bad"] and "unknown setting 'psl'" in out["bad"]
    assert "setting 'psl' of method 'deep_prompt'" in out["bad_psl"]
    assert {"finetune", "deep_prompt", "soft_prompt", "lora"} <= set(out["methods"])
    assert {"psl", "shift_positions", "prefix_projection"} <= set(out["deep_prompt_settings"])


def test_method_model_classes_still_importable_from_their_method_module() -> None:
    from xtuner.methods import _deep_prompt_model, _soft_prompt_model, backbone_of, encoder_hidden_states
    from xtuner.methods._encode import backbone_of as real_backbone_of
    from xtuner.methods.deep_prompt import DeepPromptEncoder, PrefixEncoder
    from xtuner.methods.soft_prompt import SoftPromptEncoder

    assert DeepPromptEncoder is _deep_prompt_model.DeepPromptEncoder
    assert PrefixEncoder is _deep_prompt_model.PrefixEncoder
    assert SoftPromptEncoder is _soft_prompt_model.SoftPromptEncoder
    assert backbone_of is real_backbone_of and callable(encoder_hidden_states)
