"""YAML mappings → dataclasses, recording every problem with its path instead of stopping at the first.

`build` coerces each value to its field's type hint (tuples, string-keyed dicts, nested dataclasses,
bool, int, float, str; YAML reads ``1e-3`` as a string, which a float field accepts), names unknown
and missing keys, and constructs the dataclass, whose ``__post_init__`` validates it
(`probing.validation.InvalidParams`): each of its problems is reported under the object's path
(``probing.k: must be at least 1, got 0``). A field it rejects is left to its default and the object
is constructed again, so that the checks across sections (``ray_jobs.config``) still see every
other value; an object whose values could not even be read (wrong types) is not judged, since its
problems could be the stand-ins'. A field with ``metadata=FLAT`` holds a dataclass whose fields are
read from its owner's own mapping (``extraction: {batch_tokens: ...}`` fills
``ExtractionConfig.params``); a key that names a field of the owner too belongs to the owner.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from probing.validation import InvalidParams

#: What `build` and `coerce` return for a value they could not read (its problems are recorded).
INVALID = object()
#: ``field(metadata=FLAT)``: the field's dataclass is read from its owner's mapping, not a nested one.
FLAT = {"yaml": "flat"}


def describe(value: object) -> str:
    """A value with its YAML-visible type, for problem messages."""
    return f"{type(value).__name__} {value!r}"


def problem_path(problem: str) -> str:
    """The YAML path a problem is about ("layers[1]: expected int, ..." → "layers[1]")."""
    return problem.split(":", 1)[0]


def overlaps(a: str, b: str) -> bool:
    """Whether one YAML path is the other or inside it ("layers" and "layers[1]")."""
    return a == b or a.startswith((f"{b}.", f"{b}[")) or b.startswith((f"{a}.", f"{a}["))


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def coerce(hint: object, value: object, where: str, problems: list[str]) -> object:
    """``value`` as type ``hint``, or INVALID with the reason in ``problems``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(inner[0], value, where, problems)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            problems.append(f"{where}: expected a list, got {describe(value)}")
            return INVALID
        item_types = [args[0]] * len(value) if (len(args) == 2 and args[1] is Ellipsis) else list(args)
        if len(item_types) != len(value):
            problems.append(f"{where}: expected a list of {len(item_types)} items, got {len(value)}")
            return INVALID
        pairs = enumerate(zip(item_types, value, strict=True))
        items = [coerce(t, v, f"{where}[{i}]", problems) for i, (t, v) in pairs]
        return INVALID if any(x is INVALID for x in items) else tuple(items)
    if origin is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            problems.append(f"{where}: expected a mapping with string keys, got {describe(value)}")
            return INVALID
        if not args:
            return dict(value)
        items = {key: coerce(args[1], v, f"{where}.{key}", problems) for key, v in value.items()}
        return INVALID if any(x is INVALID for x in items.values()) else items
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where, problems)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads 1e-3 as a string
            except ValueError:
                pass
    elif hint is str and isinstance(value, str):
        return value
    problems.append(f"{where}: expected {getattr(hint, '__name__', hint)}, got {describe(value)}")
    return INVALID


def build(cls: type, data: object, where: str, problems: list[str]) -> object:
    """Dataclass ``cls`` from a mapping, or INVALID; every problem, under ``where``, in ``problems``."""
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping, got {describe(data)}")
        return INVALID
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    nested = [f.name for f in fields if dict(f.metadata) == FLAT]
    own = [f.name for f in fields if f.name not in nested]
    flat = {name: [g.name for g in dataclasses.fields(hints[name]) if g.name not in own] for name in nested}
    known = own + [name for names in flat.values() for name in names]
    for key in sorted(set(data) - set(known), key=str):
        problems.append(f"{_at(where, key)}: unknown key (known: {', '.join(known)})")
    kwargs: dict[str, object] = {}
    unread = False
    for f in fields:
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name in flat:
            value = build(hints[f.name], {key: v for key, v in data.items() if key in flat[f.name]}, where, problems)
        elif f.name in data:
            value = coerce(hints[f.name], data[f.name], _at(where, f.name), problems)
        elif required:
            problems.append(f"{_at(where, f.name)}: required")
            value = INVALID
        else:
            continue
        if value is not INVALID:
            kwargs[f.name] = value
            continue
        unread = True
        if required:  # a stand-in, so that the other fields can still be checked
            kwargs[f.name] = () if typing.get_origin(hints[f.name]) is tuple else hints[f.name]()
    return _construct(cls, kwargs, where, problems, judged=not unread)


def _construct(cls: type, kwargs: dict, where: str, problems: list[str], judged: bool) -> object:
    """``cls(**kwargs)``; when its validation rejects fields, their problems and ``cls`` without them."""
    try:
        return cls(**kwargs)
    except InvalidParams as err:
        if not judged:
            return INVALID
        problems += [_at(where, problem) for problem in err.problems]
        kept = {name: value for name, value in kwargs.items() if name not in err.fields}
    except (TypeError, ValueError) as err:
        if judged:
            problems.append(f"{where}: {err}")
        return INVALID
    try:
        return cls(**kept)
    except (TypeError, ValueError):
        return INVALID
