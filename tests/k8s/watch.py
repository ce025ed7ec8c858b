"""Every change of one Deployment as the API server streams it (`kubectl get --watch`),
recorded while `pulumi up` runs: a rollout's capacity is then checked at every step, not
only at the end."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

from tests.k8s.cluster import BIN, Cluster

_FIELDS = ("metadata.generation", "status.observedGeneration", "status.replicas",
           "status.availableReplicas", "status.updatedReplicas", "status.unavailableReplicas")


@dataclass(frozen=True)
class DeploymentState:
    generation: int
    observed_generation: int
    replicas: int            # pods of all its ReplicaSets
    available: int
    updated: int             # pods of the newest template
    unavailable: int


@dataclass
class DeploymentWatch:
    cluster: Cluster
    namespace: str
    name: str
    states: list[DeploymentState] = field(default_factory=list)
    _proc: subprocess.Popen[str] | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> DeploymentWatch:
        template = ",".join(f"{{.{f}}}" for f in _FIELDS) + '{"\\n"}'
        self._proc = subprocess.Popen(
            [str(BIN / "kubectl"), f"--kubeconfig={self.cluster.kubeconfig}",
             "--namespace", self.namespace, "get", "deployment", self.name, "--watch",
             "--output", f"jsonpath={template}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        # The first line is the current state: from then on no change is missed.
        deadline = time.monotonic() + 30
        while not self.states:
            assert time.monotonic() < deadline, f"kubectl watch of {self.name} printed nothing"
            time.sleep(0.05)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._proc is not None and self._thread is not None
        time.sleep(0.5)  # let the last events of what just finished arrive
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._thread.join(timeout=10)

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            values = [int(v) if v else 0 for v in line.strip().split(",")]
            if len(values) == len(_FIELDS):
                self.states.append(DeploymentState(*values))

    @property
    def last(self) -> DeploymentState:
        return self.states[-1]
