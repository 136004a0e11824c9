"""`xtuner trial`: run one trial (train on English, zero-shot on every language) without Ray."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xtuner.cli.common import parse_set


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trial", help="run one trial without Ray and print per-language results")
    p.add_argument("--task", required=True)
    p.add_argument("--model", default="builtin:tiny-xlmr")
    p.add_argument("--method", default="finetune", help="finetune | deep_prompt | soft_prompt | lora")
    p.add_argument("--psl", type=int, help="prompt length (prompt methods only)")
    p.add_argument(
        "--lr", type=float,
        help="learning rate (default: the protocol's, else 1e-4 finetune, 1e-3 lora, 1e-2/3e-2 prompt methods)",
    )  # fmt: skip
    p.add_argument("--epochs", type=float, help="default: the protocol's, else 3")
    p.add_argument("--batch-size", type=int, help="default: the protocol's, else 32")
    p.add_argument("--protocol", help="a reference recipe (`xtuner protocols`): fills every setting not given")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", help="XTREME download/ dir, an original release or local parquet files (real tasks)")
    for split in ("train", "validation", "test"):
        p.add_argument(f"--{split}-data", metavar="SOURCE",
                       help=f"the {split} split's own source: hub, a folder, or xtreme:|local:|release:<folder>")  # fmt: skip
    p.add_argument(
        "--eval-split", choices=("test", "validation"),
        help="evaluate zero-shot on test (default) or on the dev sets (when test labels are missing)",
    )  # fmt: skip
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any trial or method setting"
    )
    p.add_argument("--keep-weights", metavar="DIR", help="keep the best weights in DIR (for xtuner analyze)")
    p.add_argument("--predictions", metavar="DIR", help="write the per-example test predictions to DIR (one "
                   "parquet per language; default OUTPUT_DIR/predictions with --set output_dir=...)")  # fmt: skip
    p.add_argument("--representations", type=int, metavar="ROWS",
                   help="measure representation alignment on ROWS parallel train rows at the end (pair tasks)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object with the results")
    p.set_defaults(func=run)


DEFAULT_LR = {"finetune": 1e-4, "lora": 1e-3, "deep_prompt": 1e-2, "soft_prompt": 3e-2}


class ConsoleReporter:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        if self.quiet or "done" in metrics:
            return
        dev = ", ".join(f"{k.split('/')[-1]} {v:.2f}" for k, v in metrics.items() if k.startswith("dev/"))
        print(
            f"  epoch {metrics.get('epoch', 0):.2f} step {int(metrics.get('step', 0))}: en-dev {dev}",
            file=sys.stderr,
        )

    def resume_from(self) -> str | None:
        return None


def run(args: argparse.Namespace) -> int:
    from xtuner.trial import run_trial

    config = {"task": args.task, "model": args.model, "method": args.method, "seed": args.seed}
    given = {"lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size, "psl": args.psl,
             "data_dir": args.data_dir, "protocol": args.protocol, "train_data": args.train_data,
             "validation_data": args.validation_data, "test_data": args.test_data, "eval_split": args.eval_split}  # fmt: skip
    config.update({k: v for k, v in given.items() if v is not None})
    if args.keep_weights:
        config["weights_dir"] = str(Path(args.keep_weights).expanduser().absolute())
    if args.predictions:
        config["predictions_dir"] = str(Path(args.predictions).expanduser().absolute())
    if args.representations:
        config["representation_rows"] = args.representations
    config.update(parse_set(args.set))
    if not config.get("protocol") and "lr" not in config:  # a protocol brings its own lr
        config["lr"] = DEFAULT_LR.get(args.method, 1e-4)
    if not args.json:
        lr = config.get("lr", "from protocol " + str(config.get("protocol")))
        print(f"trial: {args.task} / {args.method} / {config['model']} / lr {lr}", file=sys.stderr)
    result = run_trial(config, ConsoleReporter(quiet=args.json))
    if args.json:
        keys = ("task", "method", "eval_split", "main_metric", "test", "avg", "gap", "dev", "trainable_params",
                "total_params", "train_seconds", "eval_seconds")  # fmt: skip
        analysis = {k: v for k, v in result["metrics"].items() if k.startswith("analysis/")}
        print(json.dumps({**{k: result[k] for k in keys}, "weights": result.get("weights"),
                          "predictions": result.get("predictions"), "analysis": analysis}))  # fmt: skip
        return 0
    print_result(result)
    if result.get("predictions"):
        print(f"per-example predictions in {result['predictions']}", file=sys.stderr)
    return 0


def print_result(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    main = result["main_metric"]
    metrics = sorted({m for scores in result["test"].values() for m in scores})
    split = result.get("eval_split", "test")
    on = "test" if split == "test" else "on the dev sets (eval_split validation)"
    title = f"zero-shot {on} (selected on en dev)"
    if result.get("retrieval"):
        title = "retrieval with the untrained encoder (English is the pivot of every pair)"
    table = Table(title=f"{result['task']} / {result['method']}: {title}")
    table.add_column("lang")
    for m in metrics:
        table.add_column(m + (" *" if m == main else ""), justify="right")
    for lang, scores in result["test"].items():
        table.add_row(lang, *(f"{scores[m]:.2f}" for m in metrics))
    table.add_row("avg", *(f"{result['avg'][m]:.2f}" for m in metrics), style="bold")
    if result["gap"]:
        table.add_row("gap", *(f"{result['gap'][m]:.2f}" for m in metrics), style="bold")
    console = Console()
    console.print(table)
    if split == "validation":
        console.print(
            "eval_split validation: every language is scored on its dev set; the English number is the selection "
            "set itself (optimistic), and metric names keep the test/<lang>/... form"
        )
    share = 100 * result["trainable_params"] / max(result["total_params"], 1)
    console.print(
        f"trainable params {result['trainable_params']:,} of {result['total_params']:,} ({share:.3f} %); "
        f"train {result['train_seconds']:.1f}s, eval {result['eval_seconds']:.1f}s"
    )
