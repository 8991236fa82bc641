"""YAML for files from outside: PyYAML's safe loader with limits checked before expansion.

A 1 KB "billion laughs" file (aliases of aliases) is tiny as a node graph but expands to
billions of values when anything walks it (validation, merging), and 100,000 nested ``[``
overflows the composer's recursion. Here nesting is limited while the document is composed,
and the size the document would have once every alias is expanded is computed on the graph
(each node's size once, so this costs no more than the graph itself) and refused over a limit,
before any Python object is built; so is an alias inside its own anchor, which would expand
without end. A key written twice in one mapping is refused too (PyYAML
would keep the later silently, e.g. a second ``mqtt:`` section replacing the first). A
base-60 number (YAML 1.1 reads ``1:30`` as 90, ``3:30:00`` as 12600; YAML 1.2 dropped the form)
is read as the text it is, so a key taking a number refuses it instead of silently taking
90 where 1.5 was meant.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 64
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_TEXT_TAG = "tag:yaml.org,2002:str"
MAX_EXPANDED_NODES = 100_000


class YamlLimitError(yaml.YAMLError):
    """The document is nested too deeply or would expand too far; the text says where."""


class LimitedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting while composing and huge alias expansion after."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Compose one node, refusing nesting deeper than MAX_DEPTH."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YamlLimitError(
                    f"nested deeper than {MAX_DEPTH} levels at line {mark.line + 1}"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        """The tag of a plain scalar as the safe loader resolves it, except a base-60 number
        (``1:30``, YAML 1.1 only), which stays text."""
        tag: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        if tag in _NUMBER_TAGS and ":" in value:
            return _TEXT_TAG
        return tag

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, refusing a key written twice (the later would silently win)."""
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def expanded_size(root: yaml.Node) -> int:
    """How many nodes the document holds once every alias is expanded (iterative, memoised).

    An alias inside its own anchor (``x: &a [*a]``) would expand for ever: the walk knows the
    nodes whose children it is still counting (the path down to the current node), and one of
    them met again is refused, where before the walk pushed it again and again without end,
    taking memory until the machine ran out.
    """
    sizes: dict[int, int] = {}
    counting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            counting.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            continue
        if id(node) in sizes:
            continue
        if id(node) in counting:
            raise YamlLimitError(
                f"an alias inside its own anchor at line {node.start_mark.line + 1} "
                "(a structure that contains itself)"
            )
        counting.add(id(node))
        stack.append((node, True))
        stack += [(child, False) for child in children if id(child) not in sizes]
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def safe_load_limited(text: str) -> Any:
    """Parse YAML text like ``yaml.safe_load``, within MAX_DEPTH and MAX_EXPANDED_NODES."""
    loader = LimitedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        size = expanded_size(root)
        if size > MAX_EXPANDED_NODES:
            raise YamlLimitError(
                f"would expand to {size} values (aliases); more than {MAX_EXPANDED_NODES}"
            )
        return loader.construct_document(root)
    finally:
        loader.dispose()
