"""A YAML SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last
silently), naming the key by its path in the document, e.g. `tenants[0].vpcs[0].vms[1].name`.
"""

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice; `path` is where, `line` the second one's line."""

    def __init__(self, path: str, key: str, line: int) -> None:
        super().__init__(f"{path}: key {key!r} given twice (line {line})")
        self.path = path
        self.detail = f"key {key!r} given twice"
        self.line = line


class StrictLoader(yaml.SafeLoader):
    """SafeLoader plus the duplicate-key check over the whole document before constructing."""

    def construct_document(self, node: Node) -> Any:
        check_duplicates(node)
        return super().construct_document(node)


def check_duplicates(root: Node) -> None:
    """Walk the node graph (aliases visited once) and raise on the first repeated key."""
    seen: set[int] = set()
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack += [(item, f"{path}[{i}]") for i, item in reversed(list(enumerate(node.value)))]
        elif isinstance(node, MappingNode):
            keys: set[tuple[str, str]] = set()
            children = []
            for key, value in node.value:
                if not isinstance(key, ScalarNode) or key.tag == MERGE_TAG:
                    continue  # merged keys may override on purpose; complex keys: no path
                where = f"{path}.{key.value}" if path else str(key.value)
                if (key.tag, key.value) in keys:
                    raise DuplicateKeyError(where, str(key.value), key.start_mark.line + 1)
                keys.add((key.tag, key.value))
                children.append((value, where))
            stack += reversed(children)
