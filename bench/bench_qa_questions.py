"""QA question fitting at scale: N random questions in 8 scripts through `_fit_questions` with the shipped tokenizer.

Run:  .venv/bin/python bench/bench_qa_questions.py [--n 20000] [--seed 14] [--max-length 128] [--doc-stride 42]
                                                    [--budgets 7] [--tokenizer builtin:tiny-xlmr ...] [--out FILE]

The test suite's property test (`tests/test_qa_questions.py`) runs 300 strings per tokenizer; this is its large-N
version. Questions are drawn per script (Latin, Cyrillic, Arabic, Devanagari, CJK, Thai, Greek, and emoji/mixed:
emoji, ZWJ sequences, combining marks, zero-width and bidi marks, and pieces of the other scripts), N/8 each, as
words of 1-12 characters (CJK and Thai without spaces), 0-600 characters long, so a good share is longer than the
question budget. The budget is the one QA preprocessing uses: ``max_length - special tokens (pair) - doc_stride - 1``
(81 for XLM-R at run_trial's defaults 128 / 42), plus any `--budgets`.

Tokenizers: the shipped `builtin:tiny-xlmr` (an XLM-R-style Unigram of 2,000 pieces; it has no CJK, Thai,
Devanagari or Greek pieces, so a run of those characters without a space is one <unk> token and such questions
rarely pass the budget), and, unless `--no-bytebpe`, a byte-level BPE tokenizer trained here on the bench's own
alphabets (1,000 pieces): every script is cut there, and a character becomes several byte tokens that share its
offsets, the hardest case for a cut at token boundaries.

Each batch of 1,000 (the `datasets.map` batch) goes through `_fit_questions`; a batch that raises is re-run one
question at a time to count the questions that fail. A question **fails** when fitting raises, the result is not a
prefix of the question, the result has more tokens than the budget, or a question that already fit was changed.
It is **cut** when the result is shorter than the question. The old cut (end offset of the last allowed token,
"cannot shorten question" when that did not shorten; before commit 46bfb20) is replayed on the same questions to
count the ones it crashed on. Writes JSON (default bench/results/qa_questions.json).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

SCRIPTS = {
    "latin": ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZñçßéèêëüöäåøæœÜÖÄ", " ", "¿¡?!.,'-:;()"),
    "cyrillic": ("абвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЭЮЯЁёіїєґ", " ", "?!.,-«»"),
    "arabic": ("ابتثجحخدذرزسشصضطظعغفقكلمنهويءآأؤإئةى", " ", "؟،.\u064b\u064e\u064f\u0650\u0651\u0652"),
    "devanagari": ("अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह", " ", "ािीुूेैोौंः्।?"),
    "cjk": ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年北京东日本語学校先生何ですかのは", "", "？。、「」"),
    "thai": ("กขฃคฅฆงจฉชซฌญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮ", "", "ะัาำิีึืุู่้๊๋เแโใไ?"),
    "greek": ("αβγδεζηθικλμνξοπρστυφχψωάέήίόύώϊϋΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ", " ", ";.,·"),
}
EMOJI = ["\U0001f600", "\U0001f44d", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
         "\U0001f1e9\U0001f1ea", "\u2764\ufe0f", "\U0001f9d1\u200d\U0001f4bb"]  # fmt: skip
MARKS = ["\u0301", "\u0308", "\u200d", "\u200b", "\u200e", "\u200f", "\u00a0", "\t", "\ufeff"]


def word(rng: random.Random, script: str) -> str:
    letters, _, punct = SCRIPTS[script]
    w = "".join(rng.choice(letters) for _ in range(rng.randint(1, 12)))
    return w + (rng.choice(punct) if rng.random() < 0.15 else "")


def question(rng: random.Random, script: str) -> str:
    target = rng.randint(0, 600)
    parts: list[str] = []
    size = 0
    while size < target:
        if script == "mixed":
            kind = rng.random()
            if kind < 0.3:
                piece = "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 4)))
            elif kind < 0.45:
                piece = word(rng, rng.choice(list(SCRIPTS))) + "".join(rng.choice(MARKS) for _ in range(3))
            else:
                piece = word(rng, rng.choice(list(SCRIPTS)))
            sep = rng.choice([" ", "", " ", "\u200b"])
        else:
            piece, sep = word(rng, script), SCRIPTS[script][1]
        parts.append(piece)
        size += len(piece) + len(sep)
        parts.append(sep)
    return "".join(parts)[:target].strip() if target else ""


def questions(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    names = [*SCRIPTS, "mixed"]
    return [(names[i % len(names)], question(rng, names[i % len(names)])) for i in range(n)]


def bytebpe(seed: int):
    """A byte-level BPE tokenizer (1,000 pieces) trained on 2,000 questions of the bench's own scripts."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([q for _, q in questions(2000, seed + 1)], vocab_size=1000, show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer)


def old_cut_fails(q: str, tok, budget: int, max_rounds: int = 1000) -> bool:
    """The cut before 46bfb20: end offset of the budget-th token; True where it raised "cannot shorten"."""
    for _ in range(max_rounds):
        enc = tok(q, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) <= budget:
            return False
        cut = q[: enc["offset_mapping"][budget - 1][1]]
        if len(cut) >= len(q):
            return True
        q = cut
    return True


def run(tok_name: str, tok, qs: list[tuple[str, str]], budget: int) -> dict:
    from xtuner.data.preprocess import _fit_questions

    texts = [q for _, q in qs]
    t0 = time.perf_counter()
    fitted: list[str | None] = []
    errors: list[str] = []
    for start in range(0, len(texts), 1000):
        batch = texts[start : start + 1000]
        try:
            fitted += _fit_questions(batch, tok, budget)
        except Exception:  # noqa: BLE001 - counted one by one below
            for q in batch:
                try:
                    fitted += _fit_questions([q], tok, budget)
                except Exception as e:  # noqa: BLE001
                    fitted.append(None)
                    errors.append(f"{type(e).__name__}: {str(e)[:200]}")
    seconds = time.perf_counter() - t0
    before = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    done = [f if f is not None else "" for f in fitted]
    after = [len(ids) for ids in tok(done, add_special_tokens=False)["input_ids"]]
    per_script: dict[str, dict[str, int]] = {}
    fails, cut, cut_chars, old_fail = 0, 0, [], 0
    for (script, q), f, nb, na in zip(qs, fitted, before, after, strict=True):
        s = per_script.setdefault(script, {"questions": 0, "over_budget": 0, "cut": 0, "failed": 0, "old_cut_failed": 0})
        s["questions"] += 1
        bad = f is None or not q.startswith(f) or na > budget or (nb <= budget and f != q)
        if nb > budget:
            s["over_budget"] += 1
            if old_cut_fails(q, tok, budget):
                s["old_cut_failed"] += 1
                old_fail += 1
        if bad:
            s["failed"] += 1
            fails += 1
        elif len(f) < len(q):
            s["cut"] += 1
            cut += 1
            cut_chars.append(len(q) - len(f))
    return {"tokenizer": tok_name, "budget": budget, "questions": len(texts), "over_budget": sum(b > budget for b in before),
            "cut": cut, "failed": fails, "old_cut_failed": old_fail, "seconds": round(seconds, 2),
            "cut_chars_median": sorted(cut_chars)[len(cut_chars) // 2] if cut_chars else 0,
            "errors": sorted(set(errors))[:5], "per_script": per_script}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--doc-stride", type=int, default=42)
    ap.add_argument("--budgets", type=int, nargs="*", default=[7], help="extra question budgets (tokens)")
    ap.add_argument("--tokenizer", nargs="*", default=["builtin:tiny-xlmr"], help="models/tokenizer folders")
    ap.add_argument("--no-bytebpe", action="store_true", help="skip the byte-level BPE tokenizer")
    ap.add_argument("--out", type=Path, default=Path("bench/results/qa_questions.json"))
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from xtuner.models import resolve_model

    qs = questions(args.n, args.seed)
    results = []
    toks = [(name, AutoTokenizer.from_pretrained(resolve_model(name))) for name in args.tokenizer]
    if not args.no_bytebpe:
        toks.append(("bytebpe-1000", bytebpe(args.seed)))
    for name, tok in toks:
        default = args.max_length - tok.num_special_tokens_to_add(pair=True) - args.doc_stride - 1
        for budget in dict.fromkeys([default, *args.budgets]):
            r = run(name, tok, qs, budget)
            results.append(r)
            print(f"{name} budget {budget:3d}: {r['questions']:,} questions, {r['over_budget']:,} over budget, "
                  f"{r['cut']:,} cut (median {r['cut_chars_median']} chars off), {r['failed']} failed; "
                  f"old cut: {r['old_cut_failed']} crashed; {r['seconds']:.1f} s")  # fmt: skip
            for script, s in r["per_script"].items():
                print(f"    {script:10s} {s['questions']:5d} q, {s['over_budget']:5d} over, {s['cut']:5d} cut, "
                      f"{s['failed']} failed, old cut crashed on {s['old_cut_failed']}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"n": args.n, "seed": args.seed, "max_length": args.max_length,
                                    "doc_stride": args.doc_stride, "results": results}, indent=1) + "\n")  # fmt: skip
    print(f"wrote {args.out}")
    return 1 if any(r["failed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
