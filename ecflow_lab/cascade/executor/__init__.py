"""The ZeroMQ executor: controller (a thread in the caller), one host agent per machine, worker processes."""

from .cluster import Cluster, LocalCluster
from .controller import RemoteTraceback, RunResult, TaskFailed

__all__ = ["Cluster", "LocalCluster", "RemoteTraceback", "RunResult", "TaskFailed"]
