"""Evidence that the embedded default is meaningful (issue: embedded default, item 5).

Plain fine-tuning on synth-xnli English train, selected on English dev, zero-shot on every language, with
(a) the shipped pretrained encoder `builtin:tiny-xlmr` and (b) the no-pretraining control: a randomly initialised
encoder of the same shape and the same tokenizer. Prints a table and writes JSON.

    python bench/bench_transfer.py [--task synth-xnli] [--epochs 4] [--lr 3e-4] [--seeds 1] [--out bench/results/transfer.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, set_seed

from xtuner.models import resolve_model
from xtuner.trial import run_trial


def random_init_copy(model_path: str, out: Path, seed: int) -> str:
    set_seed(seed)
    config = AutoConfig.from_pretrained(model_path)
    AutoModelForMaskedLM.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(model_path).save_pretrained(out)
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="synth-xnli")
    ap.add_argument("--model", default="builtin:tiny-xlmr")
    ap.add_argument("--epochs", type=float, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--methods", nargs="+", default=["finetune"])
    ap.add_argument("--out", default="bench/results/transfer.json")
    args = ap.parse_args()
    pretrained = resolve_model(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        control = random_init_copy(pretrained, Path(tmp) / "control", seed=0)
        for method in args.methods:
            for seed in args.seeds:
                for name, path in (("pretrained", pretrained), ("random-init control", control)):
                    cfg = dict(task=args.task, model=path, method=method, lr=args.lr, epochs=args.epochs,
                               batch_size=args.batch_size, seed=seed)  # fmt: skip
                    t = time.time()
                    r = run_trial(cfg)
                    main_metric = r["main_metric"]
                    row = {"encoder": name, "method": method, "seed": seed, "dev_en": r["dev"].get(f"dev/en/{main_metric}"),
                           **{lang: r["test"][lang][main_metric] for lang in r["test"]}, "seconds": round(time.time() - t, 1)}  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row))
    langs = [k for k in rows[0] if k not in ("encoder", "method", "seed", "dev_en", "seconds")]
    print(f"\n{args.task}: {main_metric}, fine-tuned on en, zero-shot (lr {args.lr}, {args.epochs} epochs)")
    print("| encoder | method | seed | en dev | " + " | ".join(langs) + " |")
    print("|---|---|---|---|" + "---|" * len(langs))
    for r in rows:
        cells = " | ".join(f"{r[lang]:.1f}" for lang in langs)
        print(f"| {r['encoder']} | {r['method']} | {r['seed']} | {r['dev_en']:.1f} | {cells} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
