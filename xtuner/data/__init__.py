"""Data path of a trial: head-type preprocessing (`preprocess`), the on-disk tokenisation cache (`cache`),
post-processing of model outputs to word tags / QA answers (`postprocess`) and length-bucketed prediction
(`batching`). `toy_tokenizer` builds a small real XLM-R-style tokenizer for tests and benchmarks."""
