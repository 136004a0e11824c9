"""Per-example statistics re-compute each task's own main metric exactly (xtuner/metrics/examples.py)."""

from __future__ import annotations

import numpy as np
import pytest

from xtuner.errors import XtunerError
from xtuner.metrics import examples
from xtuner.tasks import get_task


def test_span_f1_from_sentence_counts_equals_seqeval():
    task = get_task("synth-panx")
    refs = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"], ["O", "O"], ["B-LOC", "I-LOC", "I-LOC"]]
    preds = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-ORG"], ["B-PER", "O"], ["B-LOC", "I-LOC", "O"]]
    stats = examples.example_stats(task, preds, refs, "en")
    assert examples.kind_of(task) == "span_f1"
    assert examples.score("span_f1", stats) == pytest.approx(task.metric(preds, refs, "en")["f1"])
    idx = np.array([0, 0, 3, 1])  # a bootstrap draw: repeats count
    expect = task.metric([preds[i] for i in idx], [refs[i] for i in idx], "en")["f1"]
    assert examples.score("span_f1", stats, idx) == pytest.approx(expect)
    assert examples.score_matrix("span_f1", stats, np.stack([idx, np.arange(4)]))[0] == pytest.approx(expect)


def test_qa_stats_use_the_task_metric_per_question():
    task = get_task("mlqa")
    preds = ["the cat", "Berlin", "x"]
    refs = [["a cat"], ["berlin", "Berlin city"], ["y"]]
    stats = examples.example_stats(task, preds, refs, "en")
    whole = task.metric(preds, refs, "en")
    assert examples.score("qa", stats) == pytest.approx(whole["f1"])
    assert 100 * stats["em"].mean() == pytest.approx(whole["exact_match"])


def test_accuracy_roundtrip_through_files(tmp_path):
    task = get_task("synth-xnli")
    preds, refs = [0, 1, 2, 1], [0, 2, 2, 1]
    examples.write_predictions(tmp_path, task, "s1", ["a", "b", "c", "d"], preds, refs)
    meta, frames = examples.read_predictions(tmp_path)
    assert meta["kind"] == "accuracy" and list(frames) == ["s1"]
    assert examples.score("accuracy", frames["s1"]) == pytest.approx(
        task.metric(preds, refs, "s1")["accuracy"]
    )
    with pytest.raises(XtunerError, match="not unique"):
        examples.write_predictions(tmp_path, task, "s2", ["a", "a", "c", "d"], preds, refs)
    with pytest.raises(XtunerError, match="meta.json missing"):
        examples.read_predictions(tmp_path / "nope")
