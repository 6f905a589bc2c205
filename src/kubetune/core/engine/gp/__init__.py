"""Gaussian-process Bayesian optimization: posterior, hyperparameter fit, acquisition, and the strategy."""
