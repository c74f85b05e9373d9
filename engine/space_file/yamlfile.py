"""Reading a space file's YAML safely: bounded alias expansion and no duplicate keys.

PyYAML's ``safe_load`` builds an alias as a second reference to the same object, so a file of a
few hundred bytes can describe a structure of billions of values ("billion laughs"). Loading it
is quick, but anything that walks the result (validation, ``repr`` in an error message, ``json``)
then runs for minutes and ends in ``MemoryError``. Here the composed node graph is measured
before anything is built, counting every alias as the full size of what it points to, and a
file past :data:`MAX_EXPANDED_NODES` is refused. A key written twice in one mapping is refused
too (PyYAML silently keeps the last one, so a typo'd copy would win without a word).

Merge keys (``<<: *defaults``) keep their meaning: keys written in the mapping override merged
ones, as the YAML merge spec says; only a key written twice by hand is an error.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_EXPANDED_NODES = 100_000  # a real space file has hundreds; a grid of 1,000 choices a few thousand
MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlProblem(ValueError):
    """Why a YAML text was refused, with a 1-based line number where one is known."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        self.problem, self.line = problem, line
        super().__init__(problem if line is None else f"{problem} (line {line})")


def expanded_size(root: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> int:
    """Nodes the document holds once every alias is expanded; raises YamlProblem past ``limit``.

    Each distinct node is sized once (memoised by identity), so the walk is linear in the
    composed graph however many times its anchors are used. A node that contains itself
    (``&a [*a]``) has no finite expansion and is refused.
    """
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    # Iterative post-order walk: deep nesting must not hit Python's recursion limit either.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if not children_done:
            if key in in_progress:
                raise YamlProblem("an alias refers to the structure that contains it", _line(node))
            in_progress.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in in_progress:
                    raise YamlProblem("an alias refers to the structure that contains it", _line(child))
                if id(child) not in sizes:
                    stack.append((child, False))
            continue
        total = 1 + sum(sizes[id(child)] for child in children)
        in_progress.discard(key)
        if total > limit:
            raise YamlProblem(f"aliases expand to more than {limit:,} values", _line(node))
        sizes[key] = total
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _line(node: yaml.Node) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int | None] = {}
        for key_node, _value in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue  # merges may be overridden; complex keys are rejected by validation
            key = self.construct_object(key_node)
            try:
                first = seen.get(key, -1)
            except TypeError:
                continue
            if first != -1:
                shown = str(key)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise YamlProblem(f"duplicate key {shown!r} (first written at line {first})", _line(key_node))
            seen[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """The document in ``text``, or YamlProblem / yaml.YAMLError for a text no space file can be."""
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        expanded_size(root)
        return loader.construct_document(root)
    finally:
        loader.dispose()
