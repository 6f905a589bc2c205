"""A real Kubernetes control plane for tests and benchmarks (built by ``make control-plane``), a test kubelet
that plays the pods, and the operator's identity exactly as the Helm chart grants it."""

from .control_plane import ControlPlane, ControlPlaneError, free_port
from .identity import OperatorIdentity, chart_rbac
from .kubelet import HARTMANN6_MINIMUM, Behaviour, Connection, FakeNode, TestKubelet, hartmann6, objective

__all__ = ["Behaviour", "Connection", "ControlPlane", "ControlPlaneError", "FakeNode", "OperatorIdentity",
           "HARTMANN6_MINIMUM", "TestKubelet", "chart_rbac", "free_port", "hartmann6", "objective"]
