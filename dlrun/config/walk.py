"""The one walker of the config schema: `dlrun config`'s reference, the nearest-key hint of a validation error and the
sweep's check of a searched key all find sections and fields through here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class Key:
    """One field of a config section."""

    name: str
    field: FieldInfo
    section: type[BaseModel] | None  # the nested section it opens, or None for a value
    per_user_key: bool  # a mapping whose keys the user names (train.loss_weight.<target>, search.space.<key>)


def keys(section: type[BaseModel]) -> Iterator[Key]:
    for name, field in section.model_fields.items():
        yield Key(name, field, model_in(field.annotation), "dict[" in str(field.annotation))


def key(section: type[BaseModel], name: str) -> Key | None:
    field = section.model_fields.get(name)
    return None if field is None else Key(name, field, model_in(field.annotation), "dict[" in str(field.annotation))


def section_at(root: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    """The section a dotted path leads to (root for []), or None when a step is not a section."""
    section: type[BaseModel] | None = root
    for name in path:
        found = key(section, name) if section is not None else None
        section = found.section if found is not None else None
    return section


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic section inside a field's annotation (Optional[X], Union[X, ...], dict[str, X]), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = model_in(arg)
        if found is not None:
            return found
    return None


def leaves(root: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Key]]:
    """(dotted path, key) for every value key, nested sections flattened as `dlrun config` lists them: a per-user-key
    mapping's section opens as `<path>.<key>.`, and a key that is a role or a section (data.columns) is one value."""
    for found in keys(root):
        path = f"{prefix}{found.name}"
        if found.section is not None and "Union[" not in str(found.field.annotation):
            yield from leaves(found.section, f"{path}.<key>." if found.per_user_key else f"{path}.")
        else:
            yield path, found


def allowed_values(annotation: Any) -> list[Any]:
    """The values of every Literal inside a field's annotation (Optional[Literal[...]], X | list[X], dict[str, X]), in
    order; [] when the key is not enumerated."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    values: list[Any] = []
    for arg in getattr(annotation, "__args__", ()):
        values.extend(value for value in allowed_values(arg) if value not in values)
    return values


def paths_ending_in(root: type[BaseModel], name: str) -> list[str]:
    """Full paths of the value keys whose last part is `name` (`epochs` -> ['train.epochs']); keys the user names
    (search.space.<key>) are left out, as they have no one spelling."""
    return [path for path, _ in leaves(root) if path.rsplit(".", 1)[-1] == name and "<key>" not in path]


def enumerated(root: type[BaseModel]) -> dict[str, list[Any]]:
    """Dotted path -> allowed values, for every enumerated (Literal) value key: what `dlrun config` lists."""
    return {path: values for path, found in leaves(root) if (values := allowed_values(found.field.annotation))}
