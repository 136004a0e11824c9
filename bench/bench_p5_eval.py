"""P5: length-bucketed vs naive padded evaluation (goal >= 2x faster, identical predictions and metric).

Run:  .venv/bin/python bench/bench_p5_eval.py [--data varied|synth] [--n 2000] [--max-length 256]
                                               [--batch-size 32] [--hidden 128 --layers 4] [--tokenizer DIR]

Data (sequence classification, XNLI schema):
- varied (default): premises that join 1..16 random synth-xnli premises of all seven synthetic languages, so
  lengths spread from about 10 to `--max-length` tokens; hypotheses and labels from synth-xnli;
- synth: the synth-xnli test split of every language as is (short, fairly uniform pairs).
Model: `XLMRobertaForSequenceClassification` with the built-in tiny-xlmr shape (hidden 128, 4 layers, 4 heads;
random weights: speed and padding invariance do not depend on them), fp32 on CPU. Three plans, same model,
same features, same `xtuner.data.batching.predict`:
- naive: dataset order, every batch padded to max_length (fixed-length padding as XTREME's scripts do);
- in-order dynamic: dataset order, each batch padded to its own longest row (Trainer's default collator);
- bucketed: sorted by length, each batch padded to its own longest row, outputs put back in order.
Each plan runs `--repeats` times, round-robin, after one warm-up batch, on `--threads` torch threads (default 1:
steadier on a shared box); the minimum time is reported, with the padded token count of each plan.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch


def varied_data(n: int, seed: int) -> datasets.Dataset:
    from xtuner.tasks import get_task

    task = get_task("synth-xnli")
    pool = [task.load("test", lang) for lang in task.languages]
    premises = [p for ds in pool for p in ds["premise"]]
    hyps = [h for ds in pool for h in ds["hypothesis"]]
    rng = random.Random(seed)
    rows = {"premise": [], "hypothesis": [], "label": []}
    for _ in range(n):
        rows["premise"].append(" ".join(rng.choice(premises) for _ in range(rng.randint(1, 16))))
        rows["hypothesis"].append(rng.choice(hyps))
        rows["label"].append(rng.randrange(3))
    return datasets.Dataset.from_dict(rows, features=task.features)


def synth_data() -> datasets.Dataset:
    from xtuner.tasks import get_task

    task = get_task("synth-xnli")
    return datasets.concatenate_datasets([task.load("test", lang) for lang in task.languages])


def main() -> None:
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

    from xtuner.data.batching import bucketed_batches, pad_collate, predict, sequential_batches
    from xtuner.data.preprocess import tokenize_split
    from xtuner.metrics import accuracy
    from xtuner.tasks import get_task

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=("varied", "synth"), default="varied")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 = stable timings on a shared box)"
    )
    ap.add_argument("--tokenizer")
    args = ap.parse_args()
    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        if args.tokenizer:
            tok_dir = args.tokenizer
        else:
            from bench_p3_cache import default_tokenizer

            tok_dir = default_tokenizer(Path(tmp) / "tok")
        tok = AutoTokenizer.from_pretrained(tok_dir)
    raw = varied_data(args.n, 0) if args.data == "varied" else synth_data()
    feats = tokenize_split(
        get_task("synth-xnli"), raw, tok, max_length=args.max_length, doc_stride=0, train=False
    )
    lengths = np.array(feats["length"])

    torch.manual_seed(0)
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=args.hidden, num_hidden_layers=args.layers,
                           num_attention_heads=4, intermediate_size=4 * args.hidden,
                           max_position_embeddings=args.max_length + 2, pad_token_id=tok.pad_token_id,
                           type_vocab_size=1, num_labels=3)  # fmt: skip
    model = XLMRobertaForSequenceClassification(cfg).eval()
    plans = {
        "naive (in order, pad to max_length)": (pad_collate(tok, max_length=args.max_length), False),
        "in-order dynamic padding": (pad_collate(tok), False),
        "bucketed (sorted, dynamic padding)": (pad_collate(tok), True),
    }
    predict(
        model, feats.select(range(args.batch_size)), pad_collate(tok), args.batch_size, device="cpu"
    )  # warm-up
    times: dict[str, list[float]] = {name: [] for name in plans}
    logits = {}
    for _ in range(args.repeats):  # round-robin, so load changes on a shared box hit every plan alike
        for name, (collate, bucketed) in plans.items():
            t0 = time.perf_counter()
            out = predict(
                model, feats, collate, args.batch_size, bucketed=bucketed, device="cpu", use_bf16=False
            )
            times[name].append(time.perf_counter() - t0)
            logits[name] = out["logits"]
    results = {name: (min(times[name]), logits[name]) for name in plans}
    padded = {
        "naive (in order, pad to max_length)": len(lengths) * args.max_length,
        "in-order dynamic padding": sum(
            len(b) * lengths[b].max() for b in sequential_batches(len(lengths), args.batch_size)
        ),
        "bucketed (sorted, dynamic padding)": sum(
            len(b) * lengths[b].max() for b in bucketed_batches(lengths, args.batch_size)
        ),
    }

    print(f"data={args.data} examples={len(feats)} max_length={args.max_length} batch={args.batch_size} "
          f"model=hidden {args.hidden} x {args.layers} layers, torch threads={torch.get_num_threads()}")  # fmt: skip
    print(
        f"lengths: min {lengths.min()} median {int(np.median(lengths))} mean {lengths.mean():.1f} max {lengths.max()}"
    )
    base_t, base_logits = results["naive (in order, pad to max_length)"]
    base_pred = base_logits.argmax(-1)
    for name, (t, logits) in results.items():
        pred = logits.argmax(-1)
        acc = accuracy(pred, feats["labels"])["accuracy"]
        print(f"{name:38s} {t:7.2f} s  speed-up vs naive {base_t / t:5.2f}x  padded tokens {padded[name]:>7}  "
              f"accuracy {acc:.2f}  "
              f"same predictions {bool((pred == base_pred).all())}  max |dlogit| "
              f"{np.abs(logits - base_logits).max():.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
