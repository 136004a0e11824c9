"""Intermediate-task training before the target task (X-STILTs; Phang et al. 2020, arXiv 2005.13013).

- `settings`: the stage-1 settings (the ``intermediate`` block of a sweep spec's task) and the variants
  ``none`` / ``en`` / ``multi``.
- `data`: the stage-1 training set: the variant's languages' train splits, budget-matched, shuffled with the seed,
  optionally noised (word drops and local shuffles that imitate machine translation).
- `store`: the content-addressed, locked stage-1 results in the sweep's storage (one training per distinct key).
- `stage1`: stage 1 itself (run_trial's own pieces: setup, build, transformers' Trainer) and the encoder it keeps.
- `report`: the variant comparison (variant x method per target task, seen and unseen languages).
"""
