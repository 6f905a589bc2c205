"""The cluster-only corner of the core: what only the operator needs, still pure (plain dicts in, plain dicts
out): the trial pod (:mod:`.pods`), GPU-sharing translation (:mod:`.gpu_sharing`), the CRDs and the cluster
records they describe (:mod:`.crd`, :mod:`.resources`), a pod's outcome (:mod:`.outcome`) and the
leader-election rules (:mod:`.leadership`). Everything else in :mod:`kubetune.core` is shared by every
shell."""
