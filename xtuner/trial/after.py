"""What a trial does after training, besides the zero-shot evaluation: keep its best weights (`weights_dir`,
`keep_weights`) and run the representation analysis on them (`representation_rows`). Forward passes only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from xtuner.errors import XtunerError


def keep_weights(setup, built) -> str | None:
    """Write the (best) weights to ``cfg.weights_dir`` when the policy keeps this method's; the location or None."""
    from xtuner.trial.weights import keeps, save_kept

    cfg = setup.cfg
    if not cfg.weights_dir or not keeps(cfg.keep_weights, built):
        return None
    size = save_kept(built, setup, cfg.weights_dir)
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    print(f"kept the best weights ({shown}) in {cfg.weights_dir}", file=sys.stderr)
    return cfg.weights_dir


def representation_metrics(setup, built) -> dict[str, float]:
    """``analysis/representations/<lang>/<metric>`` of the trained model, or {} when off or not a pair task."""
    from xtuner.analysis.representations.data import check_pair_task, load_parallel
    from xtuner.analysis.representations.measure import analyse_model, flat
    from xtuner.tasks import LoadContext

    cfg, task = setup.cfg, setup.task
    if not cfg.representation_rows:
        return {}
    try:
        check_pair_task(task)
    except XtunerError:
        return {}  # the sweep option applies to the sentence-pair tasks of a sweep only
    ctx = LoadContext(data_dir=Path(cfg.data_dir).expanduser() if cfg.data_dir else None, splits=cfg.split_sources())
    rows = load_parallel(task, setup.languages, ctx, rows=cfg.representation_rows)
    per_lang = analyse_model(task, built.model, setup.tokenizer, rows, batch_size=cfg.eval_batch_size)
    out: dict[str, Any] = flat(per_lang)
    out["analysis/representations/rows"] = float(len(rows.ids))
    return out
