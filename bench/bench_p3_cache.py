"""P3: a second trial's data preparation time vs the first's (goal <= 5 %), through the tokenisation cache.

Run:  .venv/bin/python bench/bench_p3_cache.py [--tasks synth-xnli,synth-panx,synth-xquad] [--scale 1]
                                                [--mode data_key|fingerprint] [--tokenizer DIR]

One "trial's data preparation" = for every task: English train (train features), English validation and the
test split of every language (eval features AND the raw split, which scoring needs). Two separate processes
run it one after the other on one fresh cache directory (a trial is a fresh Ray worker process); each times
only the preparation (imports and tokenizer loading are the same for both and not counted).
- mode data_key: the caller names the raw data (task, split, language, scale); train goes through
  `cached_tokenize`, eval splits through `cached_prepare` (raw kept in the entry), so a hit never loads data;
- mode fingerprint: every split is loaded/generated, then `cached_tokenize` without data_key (the raw
  `_fingerprint` is the data identity): tokenisation is skipped on a hit, loading is not.
`--scale k` repeats every train split k times (e.g. 25 x 4,000 = 100k pairs, a quarter of real XNLI train).
The tokenizer is the built-in tiny-xlmr's when it is shipped, else one trained like it
(`xtuner.models.build.train_tokenizer` on 5,000 synthetic corpus lines).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets


def prepare(
    tasks: list[str], tokenizer_dir: str, cache_dir: str, scale: int, mode: str, max_length: int
) -> dict:
    from transformers import AutoTokenizer

    from xtuner.data.cache import cached_prepare, cached_tokenize
    from xtuner.tasks import get_task

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    datasets.disable_progress_bars()
    jobs = []
    for name in tasks:
        task = get_task(name)
        jobs.append((task, "train", task.source_lang, True))
        jobs.append((task, "validation", task.source_lang, False))
        jobs += [(task, "test", lang, False) for lang in task.languages]
    started = time.perf_counter()
    hits = rows = 0
    for task, split, lang, train in jobs:
        k = scale if split == "train" else 1

        def load(task=task, split=split, lang=lang, k=k) -> datasets.Dataset:
            ds = task.load(split, lang)
            return datasets.concatenate_datasets([ds] * k) if k > 1 else ds

        kw = {"max_length": max_length, "doc_stride": 64 if task.head == "extractive_qa" else 0, "train": train,
              "cache_dir": Path(cache_dir)}  # fmt: skip
        if mode == "fingerprint":
            raw = load()
            ds, hit = cached_tokenize(task, split, lang, lambda raw=raw: raw, tok, **kw)
        elif train:
            ds, hit = cached_tokenize(
                task, split, lang, load, tok, data_key=f"{task.name}|{split}|{lang}|x{k}", **kw
            )
        else:
            raw, ds, hit = cached_prepare(
                task, split, lang, load, tok, data_key=f"{task.name}|{split}|{lang}", **kw
            )
        hits += hit
        rows += ds.num_rows
    return {"seconds": time.perf_counter() - started, "splits": len(jobs), "hits": hits, "rows": rows}


def default_tokenizer(out: Path) -> str:
    from xtuner.models import shipped_dir

    shipped = shipped_dir("tiny-xlmr")
    if (shipped / "tokenizer.json").is_file():
        return str(shipped)
    from xtuner.models.build import train_tokenizer
    from xtuner.synth.corpus import corpus_lines

    train_tokenizer(list(corpus_lines(5000))).save_pretrained(str(out))
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="synth-xnli,synth-panx,synth-xquad")
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--mode", choices=("data_key", "fingerprint"), default="data_key")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--tokenizer")
    ap.add_argument("--trial", nargs=2, metavar=("TOKENIZER", "CACHE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    if args.trial:
        print(json.dumps(prepare(tasks, *args.trial, args.scale, args.mode, args.max_length)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = args.tokenizer or default_tokenizer(Path(tmp) / "tok")
        cmd = [sys.executable, __file__, "--tasks", args.tasks, "--scale", str(args.scale), "--mode", args.mode,
               "--max-length", str(args.max_length), "--trial", tok_dir, str(Path(tmp) / "cache")]  # fmt: skip
        runs = [
            json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout) for _ in "12"
        ]
        size = sum(f.stat().st_size for f in (Path(tmp) / "cache").rglob("*") if f.is_file())
    first, second = runs
    print(f"tasks={args.tasks} scale={args.scale} mode={args.mode} max_length={args.max_length}")
    print(f"splits={first['splits']} feature rows={first['rows']} cache size={size / 2**20:.1f} MiB")
    print(f"trial 1 (cold): {first['seconds']:.3f} s, hits {first['hits']}/{first['splits']}")
    print(f"trial 2 (warm): {second['seconds']:.3f} s, hits {second['hits']}/{second['splits']}")
    ratio = second["seconds"] / first["seconds"]
    print(f"second/first = {100 * ratio:.1f} %  (goal <= 5 %: {'met' if ratio <= 0.05 else 'NOT met'})")


if __name__ == "__main__":
    main()
