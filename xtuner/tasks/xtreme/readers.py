"""Readers for the files of an XTREME ``download/`` folder (google-research/xtreme ``scripts/download_data.sh``).

Each reader is a generator of rows already in the task schema, for ``datasets.Dataset.from_generator`` (which
caches the result as Arrow). Formats, as ``utils_preprocess.py`` writes them:

- pairs (xnli, pawsx): ``csv.writer(delimiter="\\t")`` rows ``s1, s2, label`` -- minimal csv quoting (fields
  holding a tab, quote or newline are quoted, quotes doubled), ``\\r\\n`` line ends. We decode the quoting, so
  text round-trips exactly (XTREME's own reader used ``quotechar=None`` and kept the quote characters). A row that
  spans several lines is an error: XTREME's text never holds a newline, so it is a file written without csv quoting
  whose field starts with a bare quote character, which would otherwise merge the lines up to the next quote into
  one example without a word.
  Test files are written without the label column.
- tags (udpos, panx): one ``word\\ttag`` line per token, a blank line between sentences; test files hold words only.
- squad (SQuAD v1.1, XQuAD, MLQA, TyDiQA-GoldP): SQuAD JSON. XTREME strips the answers of test files
  (``answers: [{"answer_start": 0, "text": ""}]``).
- glue_mnli (not in an XTREME folder: GLUE's ``MNLI/dev_matched.tsv``, the dev set salesforce/MPT selects XNLI
  models on): a header row naming the columns; ``sentence1``, ``sentence2`` and ``gold_label`` are read, fields are
  split on tabs without any quoting (as GLUE's own reader does: the text holds bare quote characters). Rows whose
  gold label is "-" (no annotator majority) are skipped, as GLUE did when it built its 9,815-pair dev_matched from
  MultiNLI's 10,000.

Every problem raises XtunerError naming the file (and line): missing labels, malformed lines, unknown labels, an
empty file. A file without labels is never read as if it had them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from xtuner.errors import XtunerError

# bump whenever a reader or `normalise` changes its output: it is part of the tokenisation-cache key
READER_VERSION = 3  # 3: XTREME's translate-train files (translated_pairs, squad_translated)

# XNLI-MT's train files (and so google/xtreme) spell it "contradictory"
LABEL_ALIASES = {"contradictory": "contradiction"}

UNLABELED_HINT = (
    "XTREME's download script strips the labels of its test files (and of TyDiQA-GoldP dev). Take the test "
    "split from a labelled source: test_data: hub (the Hugging Face hub, or source='hub'), test_data: "
    "release:<folder> (the original release: XNLI-1.0/xnli.test.tsv, PAWS-X x-final/<lang>/test_2k.tsv, "
    "tydiqa-goldp-v1.1-dev.json, XQuAD xquad.<lang>.json, MLQA_V1/), or test_data: <folder> with labelled files in "
    "this layout; or evaluate zero-shot on the dev sets with eval_split: validation (the English score is then "
    "the selection set itself; not for xquad, tydiqa or tatoeba, which have no dev sets besides English's). See "
    "docs/data.md"
)


def not_utf8(path: str) -> XtunerError:
    """The error for a text file that is not UTF-8, naming the line and offset of its first bad byte."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return XtunerError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save it as UTF-8"
        )
    return XtunerError(f"{path}: not UTF-8 text")


def check_answers(context: str, texts: list[str], starts: list[int], where: str) -> None:
    """Every answer must lie inside its context and match the context's text there (else it would be trained
    and scored as "no answer" without a word)."""
    for k, (text, start) in enumerate(zip(texts, starts, strict=True)):
        if not 0 <= start <= len(context) - len(text) or context[start : start + len(text)] != text:
            there = context[start : start + len(text)] if 0 <= start < len(context) else "(outside the context)"
            raise XtunerError(
                f"{where}: answer {k} {text!r} at answer_start {start} does not match its context "
                f"({len(context)} characters; the text there is {there!r})"
            )


def _label_id(value: str, labels: tuple[str, ...], where: str) -> int:
    name = LABEL_ALIASES.get(value.strip(), value.strip())
    if name not in labels:
        raise XtunerError(f"{where}: label {value!r} is not one of the task's labels {list(labels)}")
    return labels.index(name)


def read_pairs(
    path: str, stamp: str, columns: tuple[str, str], labels: tuple[str, ...], with_id: bool
) -> Iterator[dict[str, Any]]:
    """Sentence pairs with a label; ``stamp`` (real path, size, sha256) only keys the datasets cache to the file."""
    n = 0
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quotechar='"')
        try:
            start = 1
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if reader.line_num > start:  # XTREME writes every example on one line (its text has no newline)
                    raise XtunerError(
                        f"{path}:{start}: a field opens with a quote character that closes only on line "
                        f"{reader.line_num}, which would merge {reader.line_num - start + 1} lines into one example: "
                        "the file is not csv-quoted as XTREME writes it (csv.writer, tab-separated: a field holding "
                        'a quote is quoted, its quotes doubled). Re-save it so, or quote that field'
                    )
                start = reader.line_num + 1
                if not row:
                    continue  # a blank line
                if len(row) == 2:
                    if n == 0:
                        raise XtunerError(f"{path} has no label column (2 fields per line). {UNLABELED_HINT}")
                    raise XtunerError(
                        f"{where}: malformed line: 2 fields, expected 3 (sentence1, sentence2, label)"
                    )
                if len(row) != 3:
                    raise XtunerError(
                        f"{where}: malformed line: {len(row)} fields, expected 3 (sentence1, sentence2, label)"
                    )
                out: dict[str, Any] = {columns[0]: row[0], columns[1]: row[1]}
                out["label"] = _label_id(row[2], labels, where)
                if with_id:
                    out = {"id": n, **out}
                n += 1
                yield out
        except csv.Error as e:
            raise XtunerError(f"{path}:{reader.line_num}: malformed line: {e}") from None
        except UnicodeDecodeError:
            raise not_utf8(path) from None
    if n == 0:
        raise XtunerError(f"{path}: no examples in the file")


def read_tags(
    path: str, stamp: str, tag_column: str, labels: tuple[str, ...], lang: str, with_langs: bool
) -> Iterator[dict[str, Any]]:
    """Blocks of ``word<TAB>tag`` lines; yields {tokens, <tag_column> ids[, langs]} per sentence."""
    tokens: list[str] = []
    tags: list[int] = []
    n = 0

    def sentence() -> dict[str, Any]:
        row: dict[str, Any] = {"tokens": list(tokens), tag_column: list(tags)}
        if with_langs:
            row["langs"] = [lang] * len(tokens)
        return row

    with open(path, encoding="utf-8-sig") as f:
        lines = _lines(f, path)
        for lineno, raw in enumerate(lines, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                if tokens:
                    yield sentence()
                    n += 1
                    tokens, tags = [], []
                continue
            fields = line.split("\t")
            where = f"{path}:{lineno}"
            if len(fields) == 1:
                if n == 0 and not tokens:
                    raise XtunerError(f"{path} has no tag column (one word per line). {UNLABELED_HINT}")
                raise XtunerError(f"{where}: malformed line {line!r}: expected word<TAB>tag")
            if len(fields) != 2:
                raise XtunerError(
                    f"{where}: malformed line {line!r}: {len(fields)} fields, expected word<TAB>tag"
                )
            tokens.append(fields[0])
            tags.append(_label_id(fields[1], labels, where))
    if tokens:
        yield sentence()
        n += 1
    if n == 0:
        raise XtunerError(f"{path}: no sentences in the file")


def _lines(f: Any, path: str) -> Iterator[str]:
    try:
        yield from f
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def _load_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise XtunerError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def read_squad(path: str, stamp: str, id_prefix: str, lenient: bool = False) -> Iterator[dict[str, Any]]:
    """SQuAD-format JSON -> one row per question. ``id_prefix`` (e.g. "english") keeps only ids whose first
    ``-``-separated part equals it, as the combined TyDiQA-GoldP train file needs; "" keeps all. `lenient` skips
    a question without an answer, or whose answer is not at its ``answer_start`` (machine-translated data)."""
    data = _load_json(path)
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise XtunerError(f"{path}: malformed SQuAD JSON: expected an object with a 'data' list")
    n = 0
    loc = ""
    for i, article in enumerate(articles):
        loc = f"article {i}"
        try:
            title = str(article.get("title", ""))
            for j, par in enumerate(article["paragraphs"]):
                loc = f"article {i}, paragraph {j}"
                context = par["context"]
                for qa in par["qas"]:
                    qid = str(qa["id"])
                    if id_prefix and qid.split("-")[0] != id_prefix:
                        continue
                    texts = [a["text"] for a in qa["answers"]]
                    starts = [int(a["answer_start"]) for a in qa["answers"]]
                    if not any(t.strip() for t in texts):
                        if lenient:
                            continue
                        first = "has no gold answers" if n == 0 else f"question {qid!r} has no gold answer"
                        raise XtunerError(f"{path} {first}. {UNLABELED_HINT}")
                    try:
                        check_answers(context, texts, starts, f"{path} row {n} (question {qid!r}, {loc})")
                    except XtunerError:
                        if lenient:
                            continue
                        raise
                    n += 1
                    yield {
                        "id": qid,
                        "title": title,
                        "context": context,
                        "question": qa["question"],
                        "answers": {"text": texts, "answer_start": starts},
                    }
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise XtunerError(f"{path}: malformed SQuAD JSON ({loc}): {type(e).__name__}: {e}") from None
    if n == 0:
        what = f" with an id starting {id_prefix + '-'!r}" if id_prefix else ""
        raise XtunerError(f"{path}: no questions{what} in the file")


def read_glue_mnli(path: str, stamp: str) -> Iterator[dict[str, Any]]:
    """GLUE's MNLI dev/test tsv -> {premise, hypothesis, label} rows (labels as in the XNLI schema)."""
    from xtuner.tasks.schemas import NLI_LABELS

    n = 0
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        need = ("sentence1", "sentence2", "gold_label")
        if header is None or any(c not in header for c in need):
            raise XtunerError(f"{path}: expected GLUE's MNLI tsv with a header naming {', '.join(need)}; got "
                              f"{header[:6] if header else 'an empty file'}")  # fmt: skip
        s1, s2, gold = (header.index(c) for c in need)
        for row in reader:
            if not row:
                continue
            where = f"{path}:{reader.line_num}"
            if len(row) != len(header):
                raise XtunerError(f"{where}: malformed line: {len(row)} fields, the header has {len(header)}")
            if row[gold].strip() == "-":
                continue
            n += 1
            yield {"premise": row[s1], "hypothesis": row[s2], "label": _label_id(row[gold], NLI_LABELS, where)}
    if n == 0:
        raise XtunerError(f"{path}: no examples in the file")


def read_squad_translated(path: str, stamp: str) -> Iterator[dict[str, Any]]:
    """XTREME's machine-translated SQuAD (``squad.translate.train.en-<lang>.json``, SQuAD JSON): the questions
    whose translated answer lies at its ``answer_start`` in the translated context; the others are skipped."""
    yield from read_squad(path, stamp, "", lenient=True)


def read_translated_pairs(
    path: str, stamp: str, columns: tuple[str, str], labels: tuple[str, ...], with_id: bool
) -> Iterator[dict[str, Any]]:
    """XTREME's translate-train TSV (``en-<lang>-translated.tsv``): 5 tab-separated fields, English sentence 1 and
    2, translated sentence 1 and 2, label; no header and no quoting (read as tensorflow-datasets' ``xtreme_xnli``
    does). The translated sentences are kept; a pair labelled -1 (no label) is skipped."""
    n = 0
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if not row:
                    continue
                if len(row) != 5:
                    raise XtunerError(f"{where}: malformed line: {len(row)} fields, expected 5 (English sentence "
                                      "1 and 2, translated sentence 1 and 2, label)")  # fmt: skip
                if row[4].strip() == "-1":
                    continue
                out: dict[str, Any] = {columns[0]: row[2], columns[1]: row[3], "label": _label_id(row[4], labels, where)}
                if with_id:
                    out = {"id": n, **out}
                n += 1
                yield out
        except UnicodeDecodeError:
            raise not_utf8(path) from None
    if n == 0:
        raise XtunerError(f"{path}: no labelled examples in the file")


READERS = {"pairs": read_pairs, "tags": read_tags, "squad": read_squad, "glue_mnli": read_glue_mnli,
           "translated_pairs": read_translated_pairs, "squad_translated": read_squad_translated}  # fmt: skip

