"""Kept weights and `xtuner analyze representations|retrieval`: weights round-trip exactly, the analysis reads
folders and MLflow runs (a real server), writes its tables and plots, logs back to the runs, and fails with one
clear line on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xtuner.cli import main
from xtuner.methods import encoder_hidden_states
from xtuner.trial.run import build, setup_trial
from xtuner.trial.weights import keeps, load_kept, save_kept

XTREME_DOWNLOAD = Path(__file__).parent / "fixtures" / "xtreme" / "download"


def _setup(tiny_model: str, method: str, **extra):
    cfg = {"task": "synth-pawsx", "model": tiny_model, "method": method, "lr": 1e-3, **extra}
    setup = setup_trial(cfg)
    return setup, build(setup)


def _states(model, tokenizer):
    enc = tokenizer(["the farmer saw a car ."], ["a car was seen ."], return_tensors="pt")
    with torch.no_grad():
        return encoder_hidden_states(model.eval(), enc["input_ids"], enc["attention_mask"])[-1]


@pytest.fixture(scope="module")
def kept(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two kept-weights folders: a deep-prompt model with a moved prefix, and an untouched fine-tuning model."""
    root = tmp_path_factory.mktemp("kept")
    setup, built = _setup(tiny_model, "deep_prompt", psl=4)
    with torch.no_grad():
        built.model.encoder.prefix_encoder.embedding.weight.normal_(0, 1.0)
    save_kept(built, setup, str(root / "dp"))
    setup_ft, built_ft = _setup(tiny_model, "finetune")
    save_kept(built_ft, setup_ft, str(root / "ft"))
    return {"dp": root / "dp", "ft": root / "ft", "dp_model": built.model, "tokenizer": setup.tokenizer}


def test_kept_weights_round_trip(kept: dict) -> None:
    dp = load_kept(str(kept["dp"]))
    assert dp.method == "deep_prompt" and dp.meta["trainable_only"] and dp.meta["method_settings"]["psl"] == 4
    assert torch.allclose(_states(dp.built.model, dp.tokenizer), _states(kept["dp_model"], kept["tokenizer"]))
    ft = load_kept(str(kept["ft"]))
    assert not ft.meta["trainable_only"]
    dp_size, ft_size = (kept[k] / "weights.safetensors" for k in ("dp", "ft"))
    assert dp_size.stat().st_size < ft_size.stat().st_size / 50  # the prefix and the head only


def test_keep_policy(kept: dict) -> None:
    dp = load_kept(str(kept["dp"])).built
    ft = load_kept(str(kept["ft"])).built
    assert keeps("auto", dp) and not keeps("auto", ft) and keeps("all", ft) and not keeps("none", dp)


def test_analyze_representations_on_folders(kept: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["analyze", "representations", str(kept["dp"]), str(kept["ft"]), "--rows", "40", "--languages",
               "s1,s6", "--out", str(out), "--no-mlflow"])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0 and "| untuned | 1 |" in printed and "| deep_prompt | 1 |" in printed
    assert {p.name for p in out.iterdir()} == {"table.csv", "summary.md", "metrics.json", "heatmap.png",
                                               "projection_s6.png"}  # fmt: skip
    enc = json.loads((out / "metrics.json").read_text())["encoders"]
    assert set(enc) == {"untuned", "deep_prompt seed 1", "finetune seed 1"}
    untuned, ft, dp = (enc[k]["metrics"]["s6"] for k in ("untuned", "finetune seed 1", "deep_prompt seed 1"))
    assert ft == pytest.approx(untuned)  # untouched fine-tuning weights: exactly the untuned encoder
    assert dp["pos"] != pytest.approx(untuned["pos"], abs=0.5)  # the prefix is used
    assert (out / "heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_analyze_retrieval_on_a_folder(kept: dict, tmp_path: Path, capsys) -> None:
    rc = main(["analyze", "retrieval", "--task", "synth-tatoeba", str(kept["ft"]), "--languages", "s1", "--out",
               str(tmp_path), "--no-mlflow"])  # fmt: skip
    assert rc == 0
    rows = (tmp_path / "table.csv").read_text().splitlines()
    assert rows[0].startswith("encoder,method,model,seed,run_id,lang,accuracy")
    untuned = [r for r in rows if r.startswith("untuned,") and ",s1," in r][0]
    finetune = [r for r in rows if r.startswith("finetune seed 1,") and ",s1," in r][0]
    assert untuned.split(",")[6:] == finetune.split(",")[6:]


def test_analyze_reads_and_writes_mlflow_runs(kept: dict, mlflow_server: str, tmp_path: Path, capsys) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.create_experiment(f"analyze-{tmp_path.name}")
    parent = client.create_run(exp, tags={"xtuner.sweep": f"sw-{tmp_path.name}", "xtuner.kind": "sweep"})
    runs = {}
    for key in ("dp", "ft"):
        tags = {"mlflow.parentRunId": parent.info.run_id, "xtuner.sweep": f"sw-{tmp_path.name}",
                "xtuner.trial_id": f"t{key}", "xtuner.method": key}  # fmt: skip
        runs[key] = client.create_run(exp, tags=tags).info.run_id
        client.log_param(runs[key], "weights_dir", str(kept[key]))
    bare = client.create_run(exp).info.run_id
    rc = main(["analyze", "representations", f"sw-{tmp_path.name}", "--rows", "30", "--languages", "s2",
               "--out", str(tmp_path / "o"), "--tracking-uri", mlflow_server])  # fmt: skip
    assert rc == 0 and "logged to 2 MLflow run(s)" in capsys.readouterr().out
    logged = client.get_run(runs["dp"]).data.metrics
    assert {"analysis/representations/s2/pos", "analysis/representations/avg/rel_diff"} <= set(logged)
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "analysis/representations/synth-pawsx")}
    assert "analysis/representations/synth-pawsx/summary.md" in names
    rc = main(["analyze", "retrieval", "--task", "synth-tatoeba", runs["dp"], "--languages", "s1", "--out",
               str(tmp_path / "r"), "--tracking-uri", mlflow_server])  # fmt: skip
    assert rc == 0 and "logged to 1 MLflow run(s)" in capsys.readouterr().out
    assert "analysis/retrieval/synth-tatoeba/s1/accuracy" in client.get_run(runs["dp"]).data.metrics
    assert client.list_artifacts(parent.info.run_id, "analysis/retrieval/synth-tatoeba")  # the table, once
    rc = main(["analyze", "representations", bare, "--tracking-uri", mlflow_server])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith(f"error: run {bare} has no kept weights") and len(err) == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["analyze", "representations", "--model", "builtin:tiny-xlmr", "--task", "synth-udpos"],
         "not a sentence-pair task"),
        (["analyze", "representations", "--model", "builtin:tiny-xlmr", "--task", "synth-pawsx", "--languages", "de"],
         "unknown language 'de'"),
        (["analyze", "representations"], "nothing to analyse"),
        (["analyze", "retrieval", "--task", "synth-pawsx", "--model", "builtin:tiny-xlmr"], "not a retrieval task"),
        (["analyze", "representations", "--model", "builtin:tiny-xlmr", "--task", "synth-pawsx", "--languages", "s1,s6",
          "--plot-lang", "s3"], "unknown plot language 's3'"),
        (["analyze", "representations", "--model", "builtin:tiny-xlmr", "--task", "synth-pawsx", "--plot-lang", "en"],
         "unknown plot language 'en'"),
        (["analyze", "representations", "--model", "builtin:tiny-xlmr", "--task", "pawsx", "--languages", "de",
          "--data-dir", str(XTREME_DOWNLOAD)], "no parallel train rows in 'de'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_error_line(argv: list[str], message: str, capsys, tmp_path: Path) -> None:
    rc = main([*argv, "--no-mlflow", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_a_bad_plot_language_is_refused_before_encoding(kept: dict, tmp_path: Path, capsys, monkeypatch) -> None:
    import xtuner.analysis.representations.run as run

    def tripwire(*args, **kwargs):
        raise AssertionError("encoded before the plot language was checked")

    monkeypatch.setattr(run, "encode", tripwire)
    for argv in ([str(kept["dp"]), "--languages", "s1,s6", "--plot-lang", "s2"],  # task read from the kept weights
                 ["--model", "builtin:tiny-xlmr", "--task", "synth-pawsx", "--languages", "s1", "--plot-lang", "de"]):  # fmt: skip
        rc = main(["analyze", "representations", *argv, "--rows", "20", "--no-mlflow", "--out", str(tmp_path / "o")])
        lines = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: unknown plot language"), lines
        assert "valid plot languages: s1" in lines[0] and not (tmp_path / "o").exists()


def test_a_folder_without_kept_weights(tmp_path: Path, capsys) -> None:
    rc = main(["analyze", "representations", str(tmp_path), "--no-mlflow"])
    assert rc == 2 and "holds no kept weights" in capsys.readouterr().err


def test_trial_keeps_weights_and_measures_representations(tiny_model: str, tmp_path: Path) -> None:
    from xtuner.trial import run_trial

    result = run_trial({"task": "synth-pawsx", "model": tiny_model, "method": "deep_prompt", "psl": 4, "lr": 1e-2,
                        "epochs": 1, "max_train_examples": 64, "max_eval_examples": 32, "languages": ["en", "s3"],
                        "weights_dir": str(tmp_path / "w"), "keep_weights": "auto", "representation_rows": 30})  # fmt: skip
    m = result["metrics"]
    assert result["weights"] == str(tmp_path / "w") and (tmp_path / "w" / "xtuner_weights.json").is_file()
    assert m["analysis/representations/rows"] == 30.0 and "analysis/representations/s3/acc1_en_to_x" in m
    assert m["analysis/representations/avg/pos"] == m["analysis/representations/s3/pos"]  # one language
    kept = load_kept(str(tmp_path / "w"))  # the trained prefix, not a fresh one
    from xtuner.analysis.representations.data import load_parallel
    from xtuner.analysis.representations.measure import analyse_model
    from xtuner.tasks import get_task

    rows = load_parallel(get_task("synth-pawsx"), ["s3"], rows=30)
    again = analyse_model(get_task("synth-pawsx"), kept.built.model, kept.tokenizer, rows)
    assert again["s3"]["pos"] == pytest.approx(m["analysis/representations/s3/pos"], abs=1e-3)


def test_log_back_writes_more_metrics_than_one_mlflow_batch_holds(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from xtuner.analysis.representations.common import METRICS_PER_CALL, log_back
    from xtuner.analysis.representations.subjects import Ref, Subject

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("log-back")).info.run_id
    subject = Subject("dp", "deep_prompt", "m", "synth-pawsx", 1, None, None, Ref(str(tmp_path), run_id))
    values = {f"analysis/x/{i:04d}": float(i) for i in range(2 * METRICS_PER_CALL + 7)}
    values["analysis/x/nan"] = float("nan")  # left out
    held = []
    written = log_back([subject, Subject("untuned", "untuned", "m", None, None, None, None)], uri,
                       lambda s: values, lambda c, rid: held.append(rid))  # fmt: skip
    logged = client.get_run(run_id).data.metrics
    assert written == [run_id] and held == [run_id]  # no parent: the run itself holds the files
    assert len(logged) == 2 * METRICS_PER_CALL + 7 and logged["analysis/x/2006"] == 2006.0
