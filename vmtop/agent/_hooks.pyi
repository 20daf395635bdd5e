"""Types of the agent's C hooks (vmtop/agent/_hooks.c, _registry.c)."""

from collections.abc import Callable
from typing import Any

BUCKETS: int
BUCKETS_PER_DECADE: int

def now() -> float: ...
def clock_source() -> str: ...

class GroupStat:
    code: Any
    live: int
    started: int
    adopted: int
    finished: int
    cancelled: int
    failed: int
    abandoned: int
    steps: int
    secs: float
    hist: tuple[int, ...]

class TaskStat:
    task: Any
    group: GroupStat
    steps: int
    secs: float
    created: float
    last: float
    finished: int

class Registry:
    created: int
    adopted: int
    finished: int
    abandoned: int
    def __init__(
        self, cancelled_error: type[BaseException], task_type: type = ..., max_groups: int = ...
    ) -> None: ...
    def take(self) -> tuple[list[tuple[TaskStat, int, float]], list[float]]: ...
    def stat(self, task: Any, /) -> TaskStat | None: ...
    def add(self, task: Any, steps: int, seconds: float, /) -> None: ...
    def top(self, n: int, by: int, /) -> list[TaskStat]: ...
    def group_list(self) -> list[GroupStat]: ...
    def clear(self) -> None: ...
    def live(self) -> int: ...

class StepHook:
    __wrapped__: Callable[[Any], None]
    def __init__(
        self,
        handle_type: type,
        original: Callable[[Any], None],
        task_types: tuple[type, ...],
        report: Callable[[Any, BaseException], None],
        registry: Registry,
    ) -> None: ...
    def __call__(self, handle: Any) -> None: ...

class CountingCoro:
    __wrapped__: Any
    def send(self, value: Any, /) -> Any: ...
    def throw(self, *args: Any) -> Any: ...
    def close(self) -> None: ...

class TaskFactory:
    _vmtop_original: Any
    wraps: int
    def __init__(self, registry: Registry, original: Any, task_type: Any, wrap: bool) -> None: ...
    def __call__(self, loop: Any, coro: Any, **kwargs: Any) -> Any: ...

class MarkedCall:
    __wrapped__: Callable[..., Any]
    samples: int
    def __init__(self, original: Callable[..., Any], sample: Callable[[Any], object]) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def reset(self) -> None: ...

def set_type_attr(type: type, name: str, value: Any, /) -> None: ...
def untracked_ref(obj: Any, /) -> Any: ...
