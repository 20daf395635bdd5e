"""Types of the agent's C hooks (vmtop/agent/_hooks.c)."""

from collections.abc import Callable
from typing import Any

class StepHook:
    __wrapped__: Callable[[Any], None]
    def __init__(
        self,
        handle_type: type,
        original: Callable[[Any], None],
        task_types: tuple[type, ...],
        report: Callable[[Any, BaseException], None],
    ) -> None: ...
    def __call__(self, handle: Any) -> None: ...
    def take(self) -> tuple[dict[Any, list[float]], list[float]]: ...
    def add(self, task: Any, steps: int, seconds: float, /) -> None: ...

class SampledCall:
    __wrapped__: Callable[..., Any]
    def __init__(
        self, original: Callable[..., Any], every: int, sample: Callable[[Any], object]
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
