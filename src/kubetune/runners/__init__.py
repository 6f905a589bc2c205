"""Shells that run an experiment's trials: the local process runner (and, later, Ray)."""
