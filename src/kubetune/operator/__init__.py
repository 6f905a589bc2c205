"""The Kubernetes operator: kopf handlers (thin) over a level-triggered reconciler and a small API adapter."""
