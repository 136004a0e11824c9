"""Files and hub tables of the XTREME retrieval tasks, read into the retrieval schema (``schemas.RETRIEVAL_FEATURES``:
one row per sentence, both sides in one table; ``gold`` holds the id(s) of its translation, space-separated).

Tatoeba (LASER's test sets, ``facebookresearch/LASER data/tatoeba/v1``): ``tatoeba.<l3>-eng.<l3>`` and
``tatoeba.<l3>-eng.eng``, one sentence per line, line i of one the translation of line i of the other. XTREME's
``download_data.sh`` copies the first as ``tatoeba/<l>-en.<l>`` and writes the English side SORTED as
``tatoeba/<l>-en.en`` (``utils_preprocess.py: tatoeba_preprocess``): that removes the alignment, i.e. the labels,
as XTREME does with every test set; such a file is refused with the way out. Hub: google/xtreme ``tatoeba.<l3>``,
split ``validation`` (its only one), columns source_sentence, target_sentence (with their line ends),
source_lang (the code), target_lang ("eng").

BUCC 2018 (comparable corpora, https://comparable.limsi.fr/bucc2018/): ``<l>-en.<part>.<l>`` and
``<l>-en.<part>.en`` hold ``<id> TAB <sentence>`` lines (ids like ``de-000000001``, ``en-000000001``), and
``<l>-en.<part>.gold`` holds ``<l id> TAB <en id>`` lines; part ``sample`` (XTREME: dev, our ``validation``) and
``training`` (XTREME: test). XTREME's download renames them ``bucc2018/<l>-en.{dev,test}.*`` and deletes the test
gold; the archives unpack to ``bucc2018/<l>-en/<l>-en.{sample,training}.*``. As in XTREME's run script, the
sentence is the second tab field (``cut -f2``) and the id the first, both stripped. Hub: google/xtreme
``bucc18.<l>`` (validation, test) holds ONLY the gold pairs (source_sentence, target_sentence, and the two ids in
source_lang and target_lang): no non-parallel sentences, so mining on it is far easier than BUCC itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xtuner.errors import XtunerError
from xtuner.tasks.xtreme.readers import not_utf8

TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa", "et": "est",
    "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun", "id": "ind",
    "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal", "mr": "mar",
    "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl",
    "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn",
}  # fmt: skip  (XTREME utils_preprocess.py: tatoeba_preprocess; XTREME's 36 Tatoeba languages)
BUCC_PARTS = {"validation": ("dev", "sample"), "test": ("test", "training")}  # (XTREME name, BUCC name)
STRIPPED_HINT = (
    "XTREME's download script strips the labels of test sets; take this split from a labelled source: "
    "test_data: release:<folder> (the original files) or test_data: hub (see docs/data.md, retrieval tasks)"
)


def _lines(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError:
        raise not_utf8(str(path)) from None


def parallel_rows(lang: str, other: Sequence[str], english: Sequence[str], where: str) -> dict[str, list]:
    """Line-parallel sentences as retrieval rows: ``<lang>-<i>`` and ``en-<i>`` point at each other."""
    if len(other) != len(english):
        raise XtunerError(f"{where}: {len(other)} {lang} sentences but {len(english)} English ones; the two sides "
                          "must be line-parallel")  # fmt: skip
    if not other:
        raise XtunerError(f"{where}: no sentences")
    n = len(other)
    return {
        "id": [f"{lang}-{i}" for i in range(n)] + [f"en-{i}" for i in range(n)],
        "lang": [lang] * n + ["en"] * n,
        "sentence": [s.strip() for s in other] + [s.strip() for s in english],
        "gold": [f"en-{i}" for i in range(n)] + [f"{lang}-{i}" for i in range(n)],
    }


def read_tatoeba(lang: str, other: Path, english: Path, *, xtreme_layout: bool) -> dict[str, list]:
    src, en = _lines(other), _lines(english)
    if xtreme_layout and len(en) > 1 and en == sorted(en):
        raise XtunerError(f"{english} is sorted: XTREME's download script sorts the English side of Tatoeba, which "
                          f"removes the alignment (the labels). Use LASER's files (data/tatoeba/v1/tatoeba."
                          f"{TATOEBA_CODES.get(lang, '<l3>')}-eng.{{<l3>,eng}}: test_data: release:<folder>) or "
                          "test_data: hub")  # fmt: skip
    return parallel_rows(lang, src, en, f"{other} + {english}")


def read_bucc_side(path: Path) -> tuple[list[str], list[str]]:
    """(ids, sentences) of a BUCC sentence file; a line without a tab or an id is an error naming it."""
    ids, sents = [], []
    for n, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0].strip():
            raise XtunerError(f"{path}:{n}: malformed line: expected <id> TAB <sentence>")
        ids.append(fields[0].strip())
        sents.append(fields[1].strip())
    if not ids:
        raise XtunerError(f"{path}: no sentences in the file")
    return ids, sents


def read_bucc_gold(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for n, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not all(f.strip() for f in fields):
            raise XtunerError(f"{path}:{n}: malformed gold line: expected <{path.name.split('-')[0]} id> TAB <en id>")
        pairs.append((fields[0].strip(), fields[1].strip()))
    if not pairs:
        raise XtunerError(f"{path}: no gold pairs in the file")
    return pairs


def bucc_rows(
    lang: str, src: tuple[list[str], list[str]], en: tuple[list[str], list[str]], gold: Sequence[tuple[str, str]],
    where: str,
) -> dict[str, list]:  # fmt: skip
    """Both sides of one BUCC part as retrieval rows; every gold id must name a sentence of its side."""
    (src_ids, src_sents), (en_ids, en_sents) = src, en
    partners: dict[str, list[str]] = {}
    known_src, known_en = set(src_ids), set(en_ids)
    for s, e in gold:
        if s not in known_src or e not in known_en:
            missing = s if s not in known_src else e
            raise XtunerError(f"{where}: gold pair ({s}, {e}) names {missing!r}, which is not a sentence id there")
        partners.setdefault(s, []).append(e)
        partners.setdefault(e, []).append(s)
    ids = [*src_ids, *en_ids]
    return {
        "id": ids,
        "lang": [lang] * len(src_ids) + ["en"] * len(en_ids),
        "sentence": [*src_sents, *en_sents],
        "gold": [" ".join(partners.get(i, [])) for i in ids],
    }


def bucc_folders(root: Path, lang: str, split: str) -> list[tuple[Path, str]]:
    """Candidate (folder, file prefix) pairs for one BUCC part: XTREME's names, then the archives' own."""
    xtreme, bucc = BUCC_PARTS[split]
    pair = f"{lang}-en"
    return [
        (root / "bucc2018", f"{pair}.{xtreme}"),
        (root, f"{pair}.{xtreme}"),
        (root / "bucc2018" / pair, f"{pair}.{bucc}"),
        (root / pair, f"{pair}.{bucc}"),
        (root, f"{pair}.{bucc}"),
    ]


def read_bucc(lang: str, split: str, root: Path) -> tuple[dict[str, list], list[Path]]:
    """One BUCC part from a folder (either layout): the rows and the files read."""
    for folder, prefix in bucc_folders(root, lang, split):
        src, en, gold = (folder / f"{prefix}.{s}" for s in (lang, "en", "gold"))
        if src.is_file() and en.is_file():
            if not gold.is_file():
                raise XtunerError(f"{gold} is missing (the gold pairs of {src.name}). {STRIPPED_HINT}")
            rows = bucc_rows(lang, read_bucc_side(src), read_bucc_side(en), read_bucc_gold(gold), str(folder))
            return rows, [src, en, gold]
    tried = ", ".join(str(f / f"{p}.{{{lang},en,gold}}") for f, p in bucc_folders(root, lang, split))
    raise XtunerError(f"missing BUCC 2018 {lang}-en {split} files under {root}: tried {tried}")


def tatoeba_files(root: Path, lang: str) -> tuple[Path, Path, bool]:
    """(other side, English side, XTREME layout?) of one language: XTREME's folder, else LASER's files."""
    xt = (root / "tatoeba" / f"{lang}-en.{lang}", root / "tatoeba" / f"{lang}-en.en")
    if xt[0].is_file() and xt[1].is_file():
        return xt[0], xt[1], True
    code = TATOEBA_CODES.get(lang, lang)
    for folder in (root, root / "v1", root / "tatoeba" / "v1", root / "data" / "tatoeba" / "v1",
                   root / "LASER-master" / "data" / "tatoeba" / "v1", root / "LASER" / "data" / "tatoeba" / "v1"):  # fmt: skip
        other, english = folder / f"tatoeba.{code}-eng.{code}", folder / f"tatoeba.{code}-eng.eng"
        if other.is_file() and english.is_file():
            return other, english, False
    raise XtunerError(f"missing Tatoeba {lang} files under {root}: expected {xt[0]} + {xt[1]} (XTREME) or "
                      f"tatoeba.{code}-eng.{{{code},eng}} (LASER's data/tatoeba/v1)")  # fmt: skip


# ------------------------------------------------------------------------------------------------ hub tables
def hub_tatoeba_rows(lang: str, table: dict[str, list], where: str) -> dict[str, list]:
    need = ("source_sentence", "target_sentence")
    if any(c not in table for c in need):
        raise XtunerError(f"{where}: missing column(s) {[c for c in need if c not in table]}; found {list(table)}")
    return parallel_rows(lang, table["source_sentence"], table["target_sentence"], where)


def hub_bucc_rows(lang: str, table: dict[str, list], where: str) -> dict[str, list]:
    """google/xtreme bucc18.<l>: gold pairs only; the two ids are in source_lang / target_lang."""
    need = ("source_sentence", "target_sentence", "source_lang", "target_lang")
    if any(c not in table for c in need):
        raise XtunerError(f"{where}: missing column(s) {[c for c in need if c not in table]}; found {list(table)}")
    src: dict[str, str] = {}
    en: dict[str, str] = {}
    gold = []
    for s_text, e_text, s_id, e_id in zip(*(table[c] for c in need), strict=True):
        src.setdefault(s_id.strip(), s_text.strip())
        en.setdefault(e_id.strip(), e_text.strip())
        gold.append((s_id.strip(), e_id.strip()))
    if not gold:
        raise XtunerError(f"{where}: no sentence pairs")
    return bucc_rows(lang, (list(src), list(src.values())), (list(en), list(en.values())), gold, where)
