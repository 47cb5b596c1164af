"""Tuning: the search over margin, embedding size and learning rate, as local optuna trials or a Katib
Experiment whose trials are TFJobs."""
