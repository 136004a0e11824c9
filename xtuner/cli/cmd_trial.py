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
    p.add_argument("--lr", type=float, help=LazyHelp(lr_help))
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


class LazyHelp(str):
    """A help text computed when help is printed (argparse formats it with ``help % params``), so that building
    the parser does not import the method registry (torch) for every command."""

    def __new__(cls, make):
        text = super().__new__(cls, "(computed when shown)")
        text.make = make
        return text

    def __mod__(self, params):
        return self.make() % params


def default_lrs() -> dict[str, float]:
    """Each registered method's own default learning rate (`Method.default_lr`)."""
    from xtuner.methods import get_method, method_names

    return {name: get_method(name).default_lr for name in method_names()}


def lr_help() -> str:
    lrs = ", ".join(f"{name} {lr:g}" for name, lr in default_lrs().items())
    return f"learning rate (default: the protocol's, else the method's own: {lrs})"


class ConsoleReporter:
    """`run_trial`'s reporter for the terminal: each en-dev evaluation as a line, and `progress` (stages, a progress
    bar with ETA for the training steps and the per-language evaluation; plain lines when stderr is not a
    terminal)."""

    def __init__(self, quiet: bool) -> None:
        from xtuner.progress import ConsoleProgress, NullProgress

        self.quiet = quiet
        self.progress = NullProgress() if quiet else ConsoleProgress(sys.stderr)

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        if self.quiet or "done" in metrics:
            return
        from xtuner.progress import fit_line

        dev = ", ".join(f"{k.split('/')[-1]} {v:.2f}" for k, v in metrics.items()
                        if k.startswith("dev/") and k != "dev/en/main")  # fmt: skip
        step = f"  epoch {metrics.get('epoch', 0):.2f} step {int(metrics.get('step', 0))}:"
        self.progress.log(fit_line(step, f"en-dev {dev}", ""))

    def resume_from(self) -> str | None:
        return None


def run(args: argparse.Namespace) -> int:
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
    sets = parse_set(args.set)
    config.update(sets)
    if not args.json:  # a first sign of life before the slow imports (torch, transformers)
        print(f"trial: {args.task} / {config['method']} / {config['model']}", file=sys.stderr, flush=True)
        print("  loading torch and transformers ...", file=sys.stderr, flush=True)
    check_set_keys(sets, str(config["method"]))
    if not config.get("protocol") and "lr" not in config:  # a protocol brings its own lr
        config["lr"] = default_lrs().get(str(config["method"]), 1e-4)
    if not args.json:
        lr = config.get("lr", "from protocol " + str(config.get("protocol")))
        print(f"  lr {lr}, seed {config['seed']}", file=sys.stderr, flush=True)
    from xtuner.trial import run_trial

    reporter = ConsoleReporter(quiet=args.json)
    try:
        result = run_trial(config, reporter)
    finally:
        if hasattr(reporter.progress, "close"):
            reporter.progress.close()
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


def check_set_keys(sets: dict, method: str) -> None:
    """Every --set key is a trial setting or a setting of `method`; else one error with a did-you-mean hint."""
    from xtuner.errors import XtunerError
    from xtuner.methods import get_method
    from xtuner.sweep.spec import close_match
    from xtuner.trial import TrialConfig

    common = sorted(k for k in TrialConfig.model_fields if k != "method_settings")
    own = get_method(method).setting_names()
    for key in sets:
        if key not in common and key not in own and key != "method_settings":
            hint = close_match(key, own) or close_match(key, common)  # the method's own settings first
            raise XtunerError(f"--set {key}: unknown trial setting" + (f" (did you mean {hint!r}?)" if hint else "")
                              + f"; settings of {method!r}: {', '.join(own) or '(none)'}; trial settings: "
                              + ", ".join(common))  # fmt: skip


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
