"""The synthetic multilingual suite: an English-like source language, graded target languages, and task
generators whose labels come from the generator's own semantics. See docs/synthetic.md."""
