"""The `kind: ecs` target: EcsTarget and its parts (see target.py)."""

from components.ecs.load_balancer import EcsLoadBalancerArgs
from components.ecs.network import EcsNetworkArgs
from components.ecs.registry import ImagePusher
from components.ecs.service import EcsRelease, EcsServiceArgs
from components.ecs.target import EcsTarget, EcsTargetArgs
from components.ecs.task import EcsContainerArgs, task_family

__all__ = ["EcsContainerArgs", "EcsLoadBalancerArgs", "EcsNetworkArgs", "EcsRelease",
           "EcsServiceArgs",
           "EcsTarget", "EcsTargetArgs", "ImagePusher", "task_family"]
