"""The one walker of the config schema: `dlrun config`'s reference, the nearest-key hint of a validation error and the
sweep's check of a searched key all find sections and fields through here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

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
