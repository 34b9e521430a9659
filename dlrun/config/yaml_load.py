"""Reading YAML a user wrote: safe tags only, no duplicated keys, and a bound on what it may expand to.

PyYAML's safe_load lets a second `lr:` silently replace the first, and a few lines of aliases (`&a [*b, *b, ...]`)
expand to millions of values once something walks them (validation, `config.yaml`). Both are refused here with the
key and line named. Every failure is a yaml.YAMLError, so callers that already catch those stay as they are.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_TEXT_CHARS = 1_000_000  # a config is a page of text; a megabyte is a mistake or an attack
MAX_EXPANDED_VALUES = 100_000  # values once every alias is expanded; real configs have a few hundred
MAX_DEPTH = 50  # nesting levels; real configs have four


class YamlLimitError(yaml.YAMLError):
    """The text is valid YAML but too big, too deep or expands too far to be a config."""


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice; the problem names the key and both lines."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated within one mapping (merge keys `<<` may still be overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeConstructor reports it
                continue
            if first is not None:
                raise DuplicateKeyError(
                    None, None, f"key {key!r} appears twice in one section, on line {first} and line {line}; keep one",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse YAML text as plain data (dicts, lists, scalars); raises yaml.YAMLError on any problem."""
    if len(text) > MAX_TEXT_CHARS:
        raise YamlLimitError(f"{len(text):,} characters is more than a config may hold ({MAX_TEXT_CHARS:,})")
    try:
        loader = _StrictLoader(text)  # a SafeLoader: plain data only, never python tags
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except RecursionError:
        raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep") from None
    check_size(data)
    return data


def check_size(data: Any) -> None:
    """Walk the data as a reader will (aliases expanded); too many values or levels raise YamlLimitError early."""
    count = 0
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_EXPANDED_VALUES:
            raise YamlLimitError(f"expands to more than {MAX_EXPANDED_VALUES:,} values (aliases such as *name count "
                                 "each time they are used); a config is far smaller")
        if depth > MAX_DEPTH:
            raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
