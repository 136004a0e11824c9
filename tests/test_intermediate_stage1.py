"""Two-stage trials on the real pieces (tiny encoder built from the synthetic corpus, synthetic tasks, transformers'
Trainer): the stage-1 store shares one stage 1 between trials of any method, a killed stage 1 leaves nothing a later
trial uses, concurrent trials of one key wait rather than train twice, and the key separates what must differ."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from xtuner.intermediate.settings import IntermediateSettings
from xtuner.intermediate.stage1 import stage1_key
from xtuner.intermediate.store import DONE
from xtuner.models import resolve_model
from xtuner.tasks import LoadContext, get_task
from xtuner.trial import run_trial
from xtuner.trial.config import TrialConfig

TINY = {"max_train_examples": 64, "max_eval_examples": 32, "max_seq_length": 32, "batch_size": 16,
        "eval_batch_size": 32, "languages": ["en", "s1", "s2"], "epochs": 1}  # fmt: skip
STAGE1 = {"task": "synth-xnli", "languages": ["en", "s1", "s3"], "lr": 1.0e-4, "epochs": 1,
          "max_train_examples": 96, "max_seq_length": 32, "batch_size": 16}  # fmt: skip


def config(tmp: Path, model: str, **over) -> dict:
    return {"task": "synth-pawsx", "model": model, "method": "finetune", "lr": 3.0e-4, "seed": 1, **TINY,
            "intermediate_variant": "en", "intermediate": dict(STAGE1), "intermediate_dir": str(tmp / "store"),
            "cache_dir": str(tmp / "cache"), **over}  # fmt: skip


def stage1_metrics(result: dict) -> dict[str, float]:
    return {k: v for k, v in result["metrics"].items() if k.startswith("stage1/")}


def test_two_trials_of_different_methods_share_one_stage1(tmp_path: Path, tiny_model: str) -> None:
    first = run_trial(config(tmp_path, tiny_model))
    second = run_trial(config(tmp_path, tiny_model, method="deep_prompt", lr=1.0e-2, psl=4))
    assert first["intermediate_key"] == second["intermediate_key"]
    a, b = stage1_metrics(first), stage1_metrics(second)
    assert a["stage1/reused"] == 0.0 and b["stage1/reused"] == 1.0
    assert a["stage1/seconds"] == b["stage1/seconds"] > 0  # the one training's time, recorded once
    assert a["stage1/examples"] == 96.0 == a["stage1/examples/en"]
    assert 0.0 <= a["stage1/dev/en/main"] == a["stage1/dev/en/accuracy"] <= 100.0
    for res in (first, second):  # stage 2 ran and was tested in every language
        assert {"test/en/accuracy", "test/s1/accuracy", "test/s2/accuracy"} <= set(res["metrics"])
    store = tmp_path / "store"
    folders = [p for p in store.iterdir() if p.is_dir()]
    assert [p.name for p in folders] == [first["intermediate_key"]]
    meta = json.loads((folders[0] / DONE).read_text())
    assert meta["key"] == first["intermediate_key"] and meta["languages"] == ["en"]
    # the kept encoder: tuned layers, the backbone's own pretrained pooler (the task head is dropped)
    tuned = load_file(str(folders[0] / "encoder" / "model.safetensors"))
    original = load_file(str(Path(resolve_model(tiny_model)) / "model.safetensors"))

    def find(tensors: dict, suffix: str):
        return next(v for k, v in tensors.items() if k.endswith(suffix))

    layer = "encoder.layer.0.attention.self.query.weight"
    assert not find(tuned, layer).equal(find(original, layer))
    assert "pooler.dense.weight" in tuned  # the backbone's own pooler (pretrained when the model has one; the
    if any(k.endswith("pooler.dense.weight") for k in original):  # tiny MLM encoder has none)
        assert find(tuned, "pooler.dense.weight").equal(find(original, "pooler.dense.weight"))
    assert not any("classifier" in k or "lm_head" in k for k in tuned)


def test_none_variant_has_no_stage1(tmp_path: Path, tiny_model: str) -> None:
    result = run_trial(config(tmp_path, tiny_model, intermediate_variant="none"))
    assert not stage1_metrics(result) and "intermediate_key" not in result
    assert not (tmp_path / "store").exists()


def test_key_names_what_determines_stage1(tiny_model: str) -> None:
    task = get_task("synth-xnli")
    path = resolve_model(tiny_model)

    def key(variant: str, seed: int = 1, **settings) -> str:
        cfg = TrialConfig.from_flat({"task": "synth-pawsx", "model": tiny_model, "lr": 1.0, "seed": seed,
                                     "intermediate_variant": variant,
                                     "intermediate": {**STAGE1, **settings}})  # fmt: skip
        langs = cfg.intermediate.stage1_languages(variant, "en", list(task.train_languages))
        return stage1_key(cfg, task, langs, LoadContext(), path)[0]

    en = key("en")
    assert en == key("en", noise=0.3, languages=["en", "s2"], budget="all")  # en ignores multi's settings
    assert en != key("en", seed=2) and en != key("en", lr=2.0e-4) and en != key("multi")
    multi = key("multi")
    assert multi != key("multi", noise=0.3) and multi != key("multi", languages=["en", "s2"])
    assert multi.startswith("synth-xnli-multi-") and en.startswith("synth-xnli-en-")


def _child(tmp: Path, model: str, tag: str) -> subprocess.Popen:
    """A trial in its own process: it waits for `go`, runs, and writes its stage-1 metrics to `<tag>.json`."""
    code = f"""
import json, time, pathlib
from xtuner.trial import run_trial
cfg = json.loads({json.dumps(json.dumps(config(tmp, model, intermediate_variant="multi")))})
tmp = pathlib.Path({str(tmp)!r})
(tmp / "ready-{tag}").touch()
while not (tmp / "go").exists():
    time.sleep(0.05)
res = run_trial(cfg)
out = {{k: v for k, v in res["metrics"].items() if k.startswith("stage1/")}}
out["key"] = res["intermediate_key"]
(tmp / "{tag}.json").write_text(json.dumps(out))
"""
    env = {**os.environ, "XTUNER_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)


def test_concurrent_trials_wait_rather_than_train_twice(tmp_path: Path, tiny_model: str) -> None:
    procs = {tag: _child(tmp_path, tiny_model, tag) for tag in ("a", "b")}
    deadline = time.time() + 600
    while not all((tmp_path / f"ready-{t}").exists() for t in procs) and time.time() < deadline:
        assert all(p.poll() is None for p in procs.values()), [p.stderr.read() for p in procs.values()]
        time.sleep(0.1)
    (tmp_path / "go").touch()  # both start stage 1 at the same moment
    for proc in procs.values():
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    a, b = (json.loads((tmp_path / f"{t}.json").read_text()) for t in procs)
    assert a["key"] == b["key"]
    assert sorted([a["stage1/reused"], b["stage1/reused"]]) == [0.0, 1.0]  # trained once
    waiter = a if a["stage1/reused"] else b
    assert (
        waiter["stage1/wait_seconds"] > 0
        and waiter["stage1/seconds"] == (b if waiter is a else a)["stage1/seconds"]
    )
    assert [p.name for p in (tmp_path / "store").iterdir() if p.is_dir()] == [a["key"]]


def test_killed_stage1_leaves_nothing_a_later_trial_uses(tmp_path: Path, tiny_model: str) -> None:
    store = tmp_path / "store"
    proc = _child(tmp_path, tiny_model, "killed")
    (tmp_path / "go").touch()
    deadline = time.time() + 600
    while not list(store.glob(".synth-xnli-multi-*")) and time.time() < deadline:  # stage 1 is writing
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not [p for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")]  # no result folder
    # a partial result folder (as a killed upload to an object store leaves) is never used either
    result = run_trial(config(tmp_path, tiny_model, intermediate_variant="multi"))
    key = result["intermediate_key"]
    assert stage1_metrics(result)["stage1/reused"] == 0.0  # trained again, not taken from the killed one
    assert [p.name for p in store.iterdir() if p.is_dir()] == [key]  # the killed one's temp folder is gone
    partial = store / key
    (partial / DONE).unlink()
    again = run_trial(config(tmp_path, tiny_model, intermediate_variant="multi"))
    assert stage1_metrics(again)["stage1/reused"] == 0.0 and (partial / DONE).is_file()


def test_stage1_settings_reject_a_bad_block() -> None:
    with pytest.raises(ValueError):
        IntermediateSettings.model_validate({**STAGE1, "budget": "half"})
