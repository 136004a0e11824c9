"""A trial of a retrieval task (tatoeba, bucc2018, synth-tatoeba, synth-bucc): no training, the method's model is
built and its encoder evaluated on every non-English language (``xtuner.retrieval.evaluate``).

That is the untuned encoder for finetune and lora (LoRA's update starts at zero). A prompt method would be
evaluated with an untrained, random prompt, which measures nothing, so it is refused: a prompt-tuned encoder is
evaluated from a trained trial's kept weights (``xtuner analyze retrieval``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from xtuner.errors import XtunerError

UNTRAINED_OK = ("finetune", "lora")


def run_retrieval_trial(setup, reporter) -> dict[str, Any]:
    from xtuner.retrieval.evaluate import Encoder, evaluate_retrieval
    from xtuner.tasks import LoadContext
    from xtuner.trial.run import _save_predictions, build, summarize

    cfg, task = setup.cfg, setup.task
    if cfg.method not in UNTRAINED_OK:
        raise XtunerError(
            f"task {task.name!r} is a retrieval task: nothing is trained, so method {cfg.method!r} would be scored "
            "with an untrained prompt. Evaluate the encoder of a trained trial instead: xtuner analyze retrieval "
            f"--task {task.name} RUN_ID|SWEEP|FOLDER (methods that run untrained here: {', '.join(UNTRAINED_OK)})"
        )
    built = build(setup)
    from xtuner.analysis.representations.subjects import device

    built.model.to(device())
    ctx = LoadContext(data_dir=Path(cfg.data_dir).expanduser() if cfg.data_dir else None, splits=cfg.split_sources())
    started = time.time()
    encoder = Encoder(built.model, setup.tokenizer, batch_size=cfg.eval_batch_size)
    predictions: dict = {}
    test = evaluate_retrieval(task, encoder, setup.languages, ctx, split=cfg.eval_split, collect=predictions)
    written = _save_predictions(setup, predictions)
    result = summarize(setup, test, built, [], train_seconds=0.0, eval_seconds=time.time() - started)
    result["retrieval"] = True  # nothing trained or selected: the CLI says so
    result["predictions"], result["train_loss"] = written, []
    reporter.report({**result["metrics"], **({"predictions_dir": written} if written else {}), "done": 1.0}, None)
    return result
