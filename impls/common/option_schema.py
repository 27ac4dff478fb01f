"""Building blocks of the papers' option schemas (``impls.<paper>.options.SCHEMA``).

Caller: each ``impls/<paper>/options.py``, which builds its ``SCHEMA`` from its own tables (RULES,
DATASETS, ARCHS, hparams ...); ``impls.common.specs.validate_spec`` checks every spec against it
with the validator of ``run_spec.schema.yaml`` (``specs.validate_against``), whose messages name the
key. Plain dicts of JSON Schema 2020-12, pure Python: imported when the workflow is parsed.
``integer`` means a Python int there (3.0 is refused where a count is expected).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

DIALECT = "https://json-schema.org/draft/2020-12/schema"

BOOL = {"type": "boolean"}
NUMBER = {"type": "number"}
STRING = {"type": "string"}
NON_NEGATIVE = {"type": "number", "minimum": 0}
POSITIVE = {"type": "number", "exclusiveMinimum": 0}
POSITIVE_INT = {"type": "integer", "minimum": 1}
NON_NEGATIVE_INT = {"type": "integer", "minimum": 0}


def one_of(values: Iterable[Any]) -> dict:
    """The value is one of ``values`` (the message lists them in this order)."""
    return {"enum": list(values)}


def nullable(schema: Mapping[str, Any]) -> dict:
    """``schema`` or null (null = the option is off / takes its default)."""
    types = schema["type"]
    return {**schema, "type": ["null", *([types] if isinstance(types, str) else types)]}


def list_of(items: Mapping[str, Any], non_empty: bool = False) -> dict:
    return {"type": "array", "items": dict(items), **({"minItems": 1} if non_empty else {})}


def keys(properties: Mapping[str, Any]) -> dict:
    """A mapping that may name exactly these keys (``unknown key ...; allowed keys: ...`` otherwise)."""
    return {"type": "object", "properties": dict(properties), "additionalProperties": False}


def when(key: str, value: Any, then: Mapping[str, Any]) -> dict:
    """Apply ``then`` to the enclosing object where its ``key`` equals ``value`` (or is one of a tuple);
    ``key`` may be dotted (``model.arch``) to test a key of a nested mapping."""
    test: dict = {"enum": list(value)} if isinstance(value, tuple) else {"const": value}
    for part in reversed(key.split(".")):
        test = {"properties": {part: test}, "required": [part]}
    return {"if": test, "then": dict(then)}


def run_spec(*, rule: Iterable[str] | None = None, dataset: Iterable[str] | None = None,
             model: Mapping[str, Any] | None = None, hparams: Mapping[str, Any] | None = None,
             all_of: Iterable[Mapping[str, Any]] = ()) -> dict:
    """A paper's schema for a whole run spec (``run_spec.schema.yaml`` checks the common keys first)."""
    properties: dict[str, Any] = {}
    if rule is not None:
        properties["rule"] = one_of(rule)
    if dataset is not None:
        properties["dataset"] = one_of(dataset)
    if model is not None:
        properties["model"] = dict(model)
    if hparams is not None:
        properties["hparams"] = dict(hparams)
    schema = {"$schema": DIALECT, "type": "object", "properties": properties}
    if all_of:
        schema["allOf"] = [dict(s) for s in all_of]
    return schema
