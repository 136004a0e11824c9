"""The real XTREME tasks: xnli, pawsx, udpos, panx, xquad, mlqa, tydiqa (registered on import).

Data sources -- every task yields exactly ``task.features`` from each:

- ``hub`` (default when ``LoadContext.data_dir`` is None): parquet datasets on the Hugging Face hub via
  ``datasets.load_dataset`` -- google/xtreme (XNLI, PAWS-X.*, udpos.*, PAN-X.*, SQuAD, XQuAD.*, MLQA.*.*, tydiqa),
  facebook/xnli (the MultiNLI English train set, and all XNLI splits with ``options["hub_repo"]="facebook/xnli"``),
  google-research-datasets/paws-x and google/xquad (``hub_repo``). ``options["hub_mirror"]`` / env
  ``XTUNER_HUB_MIRROR`` points at a local copy of the repos (``<mirror>/<owner>/<name>/<config>/<split>-*.parquet``).
- ``xtreme``: ``data_dir`` is a google-research/xtreme ``download/`` folder (xnli/, pawsx/, udpos/, panx/, squad/,
  xquad/, mlqa/MLQA_V1/, tydiqa/). XTREME strips the labels of its test files: loading one raises an error that
  names the file and the alternatives.
- ``local``: ``<data_dir>/<task>/<split>-<lang>.parquet``, ``<split>-<lang>/`` (save_to_disk) or ``<lang>/``
  (a saved DatasetDict), in any hub schema above or the task schema.

The source is auto-detected from ``data_dir`` (see ``sources``); ``options["source"]`` / env ``XTUNER_DATA_SOURCE``
forces one. ``prepare.prepare`` loads (and so caches) every split a sweep needs. Details: docs/data.md.
"""

from xtuner.tasks.xtreme import retrieval as retrieval  # noqa: F401,E402  (tatoeba, bucc2018)
from xtuner.tasks.xtreme import tasks as tasks  # noqa: F401  (registers the tasks)
