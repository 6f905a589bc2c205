"""The pure core: manifest model, search space, optimizer engine, metrics, scheduling decisions.

Nothing here talks to Kubernetes, Ray, a terminal or the clock; shells (CLI, runners, operator) do I/O and
call these functions.
"""
