"""What every trial hands on besides its metrics (run_trial on the tiny encoder, no Ray): the per-example test
predictions (one parquet per language, re-scored exactly to the reported test metric), the task-independent
``main`` keys, and the training loss per logging step."""

from __future__ import annotations

import pytest

from xtuner.metrics.examples import read_predictions, score
from xtuner.trial import run_trial

SMALL = dict(epochs=1, batch_size=16, eval_batch_size=32, max_train_examples=48, max_eval_examples=12)


class Recorder:
    def __init__(self) -> None:
        self.reports: list[dict] = []

    def report(self, metrics, checkpoint_dir=None):
        self.reports.append(dict(metrics))

    def resume_from(self):
        return None


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tok-cache"))


@pytest.mark.parametrize(
    ("task", "method", "kind", "extra"),
    [
        ("synth-xnli", "finetune", "accuracy", {"lr": 3e-4}),
        ("synth-panx", "deep_prompt", "span_f1", {"lr": 1e-2, "psl": 4}),
        ("synth-xquad", "finetune", "qa", {"lr": 3e-4, "max_seq_length": 64, "doc_stride": 32}),
    ],
)
def test_predictions_rescore_to_the_reported_metric_and_main_keys_line_up(
    cache_dir, tmp_path, task, method, kind, extra
):
    rec = Recorder()
    cfg = dict(task=task, method=method, cache_dir=cache_dir, languages=["en", "s2", "s5"],
               predictions_dir=str(tmp_path / "preds"), **SMALL, **extra)  # fmt: skip
    result = run_trial(cfg, rec)
    main = result["main_metric"]
    final = rec.reports[-1]
    assert final["predictions_dir"] == result["predictions"] == str(tmp_path / "preds")

    meta, frames = read_predictions(tmp_path / "preds")
    assert meta["kind"] == kind and meta["task"] == task and meta["main_metric"] == main
    assert sorted(frames) == ["en", "s2", "s5"]
    for lang, frame in frames.items():
        assert len(frame) > 0 and frame["id"].is_unique
        assert score(kind, frame) == pytest.approx(result["test"][lang][main], abs=1e-9)
        assert final[f"test/{lang}/main"] == final[f"test/{lang}/{main}"]

    others = (result["test"]["s2"][main] + result["test"]["s5"][main]) / 2
    assert final["test/others/main"] == pytest.approx(others)
    assert final["test/gap/main"] == pytest.approx(result["test"]["en"][main] - others)
    assert final["test/avg/main"] == pytest.approx(result["avg"][main])
    assert final["dev/en/main"] == final[f"dev/en/{main}"]

    dev = [m for m in rec.reports if "done" not in m]
    assert dev and all(m["dev/en/main"] == m[f"dev/en/{main}"] for m in dev)
    # a few optimizer steps (48 examples, or their QA windows, in batches of 16): the loss is logged at every step
    # (epochs under 250 steps log at least five times), reported with the dev results and kept in the result
    reported = [p for m in rec.reports for p in m.get("train/losses", [])]
    steps = [p[0] for p in reported]
    assert steps == [float(s) for s in range(1, len(steps) + 1)] and steps[-1] == dev[-1]["step"] >= 3
    assert reported == result["train_loss"] and all(loss > 0 for _, loss in reported)


def test_predictions_can_be_turned_off_and_default_to_the_output_folder(cache_dir, tmp_path):
    base = dict(
        task="synth-xnli", method="finetune", lr=3e-4, cache_dir=cache_dir, languages=["en", "s1"], **SMALL
    )
    out = tmp_path / "out"
    result = run_trial({**base, "output_dir": str(out)})
    assert result["predictions"] == str(out / "predictions")
    assert sorted(read_predictions(out / "predictions")[1]) == ["en", "s1"]

    rec = Recorder()
    result = run_trial({**base, "predictions": False, "predictions_dir": str(tmp_path / "none")}, rec)
    assert result["predictions"] is None and "predictions_dir" not in rec.reports[-1]
    assert not (tmp_path / "none").exists()


def test_xtuner_trial_writes_predictions_where_asked(cache_dir, tmp_path, capsys):
    import json

    from xtuner.cli import main as cli_main

    folder = tmp_path / "preds"
    rc = cli_main(["trial", "--task", "synth-pawsx", "--lr", "3e-4", "--epochs", "1", "--predictions", str(folder),
                   "--set", "max_train_examples=48", "--set", "max_eval_examples=12", "--set", "languages=[en, s3]",
                   "--set", f"cache_dir={cache_dir}", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["predictions"] == str(folder)
    meta, frames = read_predictions(folder)
    assert sorted(frames) == ["en", "s3"]
    assert score(meta["kind"], frames["s3"]) == pytest.approx(out["test"]["s3"]["accuracy"])
