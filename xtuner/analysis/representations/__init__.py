"""Representation analyses of trained encoders (Tu et al. 2022, section on why prompt tuning transfers better):

- `data`: the parallel train rows (aligned by id; rows missing or labelled -1 anywhere dropped everywhere);
- `maths`: pos / neg / neg_difflabel / neg_random / rel_diff and retrieval accuracy@1 both ways;
- `measure`: encode with any method's encoder (prefix included) and measure; `subjects`: which encoders (MLflow
  run ids, sweep names, kept-weights folders, and the untuned model as the baseline);
- `run`: the pipeline; `plots`, `outputs`: projection, heatmap, tables, MLflow logging;
- `retrieval`: the same encoders on the retrieval tasks (tatoeba, bucc2018 and their synthetic twins).

CLI: ``xtuner analyze representations`` / ``xtuner analyze retrieval``; docs/analysis.md.
"""
