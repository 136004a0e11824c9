"""Where each split of each XTREME task lives: hub configs and XTREME ``download/`` file names.

Splits: "train" is the English training set (SQuAD v1.1 for xquad and mlqa, the English GoldP train for tydiqa);
"validation" is the dev set (for en: the English dev used for model selection -- SQuAD v1.1 dev for xquad, MLQA
en dev for mlqa, SQuAD v1.1 dev for tydiqa); "test" is the XTREME test set of a language (XQuAD's only
split; TyDiQA-GoldP's dev set, which XTREME uses as its test set). TyDiQA-GoldP has no English dev set apart
from its test set, so tydiqa selects on SQuAD v1.1 dev (validation/en) and has no validation set in other
languages.
Training data in another language is served where the source has it (e.g. google/xtreme PAN-X; facebook/xnli's
machine-translated MultiNLI; PAWS-X's translated train sets), else the error says why. In an XTREME download folder
the machine translations XTREME publishes (``gs://xtreme_translations``) are read where they are put:
``xnli/translate-train/en-<lang>-translated.tsv``, ``pawsx/translate-train/en-<lang>-translated.tsv`` (5 tab-separated
fields: English sentence 1 and 2, translated sentence 1 and 2, label) and
``squad/translate-train/squad.translate.train.en-<lang>.json`` (SQuAD JSON, for xquad and mlqa). xnli has a second English dev split, "mnli_matched": MNLI's validation_matched (9,815 pairs), the dev
set salesforce/MPT selects on; it comes from the hub's ``nyu-mll/glue`` ``mnli`` config, GLUE's
``MNLI/dev_matched.tsv`` (``<data_dir>/mnli/`` or ``<data_dir>/MNLI/``) beside an XTREME folder, or local parquet
``<data_dir>/xnli/mnli_matched-en.parquet``.

File names follow google-research/xtreme ``scripts/download_data.sh`` + ``utils_preprocess.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from xtuner.errors import XtunerError, unknown_name
from xtuner.tasks.xtreme.sources import FilePart, HubPart

XTREME = "google/xtreme"
SPLIT_FILE = {"train": "train", "validation": "dev", "test": "test"}
MNLI_MATCHED = "mnli_matched"
GLUE = "nyu-mll/glue"

UDPOS_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}  # fmt: skip
TYDIQA_NAMES = {
    "ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian", "ko": "korean",
    "ru": "russian", "sw": "swahili", "te": "telugu",
}  # fmt: skip

HubMap = Callable[[str, str, str | None], HubPart]  # (split, lang, chosen repo or None) -> HubPart
FileMap = Callable[[str, str, Path], FilePart]  # (split, lang, data_dir) -> FilePart


def _pick(repo: str | None, allowed: tuple[str, ...], task: str) -> str:
    if repo is None:
        return allowed[0]
    if repo not in allowed:
        raise unknown_name(f"hub_repo for task {task!r}", repo, allowed)
    return repo


def _en_only(task: str, split: str, lang: str, what: str) -> None:
    if lang != "en":
        raise XtunerError(f"task {task!r} has no {split} data in {lang!r}: {what}")


# --- hub -------------------------------------------------------------------------------------------------------


def xnli_hub(split: str, lang: str, repo: str | None) -> HubPart:
    if split == MNLI_MATCHED:
        _en_only("xnli", split, lang, "MNLI is English only")
        return HubPart(GLUE, "mnli", "validation_matched")
    repo = _pick(repo, (XTREME, "facebook/xnli"), "xnli")
    if repo == "facebook/xnli" or split == "train":  # google/xtreme has no MNLI train: facebook/xnli's is it
        return HubPart("facebook/xnli", lang, split)
    return HubPart(XTREME, "XNLI", split, "language", lang)


def pawsx_hub(split: str, lang: str, repo: str | None) -> HubPart:
    if _pick(repo, (XTREME, "google-research-datasets/paws-x"), "pawsx") == XTREME:
        return HubPart(XTREME, f"PAWS-X.{lang}", split)
    return HubPart("google-research-datasets/paws-x", lang, split)


def udpos_hub(split: str, lang: str, repo: str | None) -> HubPart:
    _pick(repo, (XTREME,), "udpos")
    return HubPart(XTREME, f"udpos.{UDPOS_NAMES[lang]}", split)


def panx_hub(split: str, lang: str, repo: str | None) -> HubPart:
    _pick(repo, (XTREME,), "panx")
    return HubPart(XTREME, f"PAN-X.{lang}", split)


def _squad_hub(task: str, split: str, lang: str) -> HubPart:
    _en_only(task, split, lang, "it trains on SQuAD v1.1 (English); the hub has no machine-translated SQuAD: "
             "put XTREME's (squad/translate-train/squad.translate.train.en-<lang>.json) in an XTREME download folder")
    return HubPart(XTREME, "SQuAD", split)


XQUAD_NO_DEV = (
    "XQuAD has only a test set; the en dev set is SQuAD v1.1 dev, so eval_split 'validation' is not possible for "
    "xquad"
)


XQUAD_NO_DEV_EVAL = (
    "XQuAD is a test set only (xquad/xquad.<l>.json, one file per language, answers stripped by XTREME's script); "
    "no language but English has a dev set, and English's is SQuAD v1.1 dev, the selection set. Score on labelled "
    "XQuAD test files instead: eval_split test with test_data: release:<folder with xquad.<l>.json> or test_data: hub "
    "(see docs/data.md)"
)


def xquad_hub(split: str, lang: str, repo: str | None) -> HubPart:
    repo = _pick(repo, (XTREME, "google/xquad"), "xquad")
    if split == "train":
        return _squad_hub("xquad", split, lang)
    if split == "validation":
        _en_only("xquad", split, lang, XQUAD_NO_DEV)
        return HubPart(XTREME, "SQuAD", "validation")
    if repo == XTREME:
        return HubPart(XTREME, f"XQuAD.{lang}", "validation")
    return HubPart("google/xquad", f"xquad.{lang}", "validation")


def mlqa_hub(split: str, lang: str, repo: str | None) -> HubPart:
    _pick(repo, (XTREME,), "mlqa")
    if split == "train":
        return _squad_hub("mlqa", split, lang)
    return HubPart(XTREME, f"MLQA.{lang}.{lang}", split)


TYDIQA_NO_DEV = (
    "TyDiQA-GoldP has only train and dev sets, and XTREME tests on the dev sets: there is no validation set apart "
    "from the test set, so eval_split 'validation' is not possible for tydiqa (its English selection set is "
    "SQuAD v1.1 dev; see docs/data.md)"
)


TYDIQA_NO_DEV_EVAL = (
    "TyDiQA-GoldP has a train and a dev set only, and XTREME tests on the dev set (tydiqa.goldp.<l>.dev.json, "
    "answers stripped by XTREME's script): there is no dev set apart from the test set, and English selects on "
    "SQuAD v1.1 dev. Score on the labelled GoldP dev instead: eval_split test with test_data: release:<folder with "
    "tydiqa-goldp-v1.1-dev.json> or test_data: hub (see docs/data.md)"
)


def tydiqa_hub(split: str, lang: str, repo: str | None) -> HubPart:
    _pick(repo, (XTREME,), "tydiqa")
    if split == "validation":  # no English GoldP dev apart from the test set: select on SQuAD v1.1 dev
        _en_only("tydiqa", split, lang, TYDIQA_NO_DEV)
        return HubPart(XTREME, "SQuAD", "validation")
    hub_split = "train" if split == "train" else "validation"  # GoldP dev serves as test
    return HubPart(XTREME, "tydiqa", hub_split, "id", TYDIQA_NAMES[lang], filter_prefix=True)


# --- XTREME download folder ---------------------------------------------------------------------------------


def translate_train(folder: str, bucket: str, lang: str, root: Path) -> FilePart:
    """XTREME's machine-translated train set of a sentence-pair task in an XTREME download folder."""
    name = f"en-{lang}-translated.tsv"
    path = root / folder / "translate-train" / name
    hint = (f"XTREME's download script fetches English training data only; its machine translations "
            f"(gs://xtreme_translations/{bucket}/translate-train/{name}) are read from {path}")  # fmt: skip
    return FilePart(((path, ""),), hint, reader="translated_pairs")


def tsv_files(folder: str, train_hint: str, translations: str = "") -> FileMap:
    """`translations`: the folder name of the task's machine translations in XTREME's bucket ("" = none)."""

    def files(split: str, lang: str, root: Path) -> FilePart:
        if translations and split == "train" and lang != "en":
            return translate_train(folder, translations, lang, root)
        path = root / folder / f"{SPLIT_FILE[split]}-{lang}.tsv"
        hint = train_hint if split == "train" and lang != "en" else ""
        return FilePart(((path, ""),), hint)

    return files


def xnli_files(train_hint: str) -> FileMap:
    """XNLI's tsv files, and GLUE's MNLI dev_matched.tsv for the "mnli_matched" dev split."""
    tsv = tsv_files("xnli", train_hint, "XNLI")

    def files(split: str, lang: str, root: Path) -> FilePart:
        if split != MNLI_MATCHED:
            return tsv(split, lang, root)
        _en_only("xnli", split, lang, "MNLI is English only")
        candidates = tuple((root / d / "dev_matched.tsv", "") for d in ("mnli", "MNLI"))
        hint = ("an XTREME download folder has no MNLI dev set: put GLUE's MNLI/dev_matched.tsv there, or use the "
                "hub (nyu-mll/glue, config mnli)")  # fmt: skip
        return FilePart(candidates, hint, reader="glue_mnli")

    return files


def _squad_files(task: str, split: str, lang: str, root: Path) -> FilePart:
    if split == "train" and lang != "en":  # XTREME's machine-translated SQuAD v1.1
        name = f"squad.translate.train.en-{lang}.json"
        path = root / "squad" / "translate-train" / name
        hint = (f"XTREME's download script fetches English SQuAD only; its machine translations "
                f"(gs://xtreme_translations/SQuAD/translate-train/{name}) are read from {path}")  # fmt: skip
        return FilePart(((path, ""),), hint, reader="squad_translated")
    _en_only(task, split, lang, "it trains on SQuAD v1.1 (English)")
    name = "train-v1.1.json" if split == "train" else "dev-v1.1.json"
    return FilePart(((root / "squad" / name, ""),))


def xquad_files(split: str, lang: str, root: Path) -> FilePart:
    if split == "validation":
        _en_only("xquad", split, lang, XQUAD_NO_DEV)
    if split != "test":
        return _squad_files("xquad", split, lang, root)
    return FilePart(((root / "xquad" / f"xquad.{lang}.json", ""),))


def mlqa_files(split: str, lang: str, root: Path) -> FilePart:
    if split == "train":
        return _squad_files("mlqa", split, lang, root)
    name = SPLIT_FILE[split]
    path = root / "mlqa" / "MLQA_V1" / name / f"{name}-context-{lang}-question-{lang}.json"
    return FilePart(((path, ""),))


def tydiqa_files(split: str, lang: str, root: Path) -> FilePart:
    base = root / "tydiqa"
    name = TYDIQA_NAMES[lang]
    if split == "validation":
        _en_only("tydiqa", split, lang, TYDIQA_NO_DEV)
        return FilePart(((root / "squad" / "dev-v1.1.json", ""),))
    if split == "train":
        train = base / "tydiqa-goldp-v1.1-train"
        combined = (train / "tydiqa-goldp-v1.1-train.json", name)  # all languages, ids "<language>-..."
        per_lang = [(train / f"tydiqa.goldp.{lang}.train.json", ""), (train / f"tydiqa.{lang}.train.json", "")]
        return FilePart((combined, *per_lang))
    dev = base / "tydiqa-goldp-v1.1-dev"  # XTREME renames tydiqa-goldp-dev-<language>.json (older: tydiqa.<l>.dev)
    names = (f"tydiqa.goldp.{lang}.dev.json", f"tydiqa.{lang}.dev.json", f"tydiqa-goldp-dev-{name}.json")
    return FilePart(tuple((dev / n, "") for n in names))
