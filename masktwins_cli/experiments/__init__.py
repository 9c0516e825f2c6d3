"""Experiment drivers above the verbs: the demo, method comparisons (train, predict, score a
table of methods over seeds) and the bookkeeping of the benchmark tables."""
