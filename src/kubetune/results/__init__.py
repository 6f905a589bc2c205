"""Reading an experiment's results back, wherever they are, for ``kubetune report``, ``status`` and
``export``: a local run folder (:mod:`.run_folder`) or an Experiment on a cluster. Both give
:class:`~.model.Results`."""
