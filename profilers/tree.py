"""Call tree view of a :class:`~profilers.stacks.StackModel` (what flamegraphs draw)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from profilers.stacks import Frame, StackModel


@dataclass(slots=True)
class Node:
    """A frame at one position in the call tree. ``total`` includes children; ``own`` does not."""

    frame: Frame
    total: float = 0.0
    own: float = 0.0
    children: dict[int, Node] = field(default_factory=dict)

    def sorted_children(self) -> list[Node]:
        """Children heaviest first (ties by label, so output is deterministic)."""
        return sorted(self.children.values(), key=lambda n: (-n.total, n.frame.label))

    def walk(self, depth: int = 0) -> Iterator[tuple[int, Node]]:
        """Depth-first (heaviest first) ``(depth, node)`` pairs, without recursion."""
        stack: list[tuple[int, Node]] = [(depth, self)]
        while stack:
            d, node = stack.pop()
            yield d, node
            stack.extend((d + 1, c) for c in reversed(node.sorted_children()))

    def count(self) -> int:
        """Number of nodes in this subtree, this one included."""
        return sum(1 for _ in self.walk())


ROOT = Frame("all")


def build_tree(model: StackModel) -> Node:
    """Merge the model's stacks into a tree under a synthetic ``all`` root."""
    root = Node(ROOT)
    frames = model.frames
    for ids, weight in model.stacks.items():
        root.total += weight
        node = root
        for i in ids:
            child = node.children.get(i)
            if child is None:
                child = node.children[i] = Node(frames[i])
            child.total += weight
            node = child
        node.own += weight
    return root
