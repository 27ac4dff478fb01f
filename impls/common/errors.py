"""Errors that reach the user: one sentence naming what is wrong and what is allowed."""
from __future__ import annotations

import difflib
import re

import yaml


class SpecError(ValueError):
    """A config, paper.yaml or run spec is invalid. The message names the key."""


def describe_schema_error(error, where: str) -> str:
    """Turn a ``jsonschema.ValidationError`` into a one-line message naming the key.

    ``where`` names the document ("config", "papers/nodepert/paper.yaml", "run spec"). Forms:
    ``<where>: key 'k' is v; allowed values: a, b`` (enum), ``<where>: unknown key 'k.x' (did you mean
    'k.y'?); allowed keys: ...`` (additionalProperties), ``<where>: unknown key 'k.lrr' (did you mean
    'k.lr'?); required key 'k.lr' is missing`` (required, the typo named first),
    ``<where>: key 'k' is v; expected <what the schema at k accepts>``, with a hint where v is a number
    that YAML read as a string (``1.0e8``: write ``1.0e+8``).
    """
    path = ".".join(str(p) for p in error.absolute_path)
    validator = error.validator
    if validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"{where}: key '{path or '<top level>'}' is {error.instance!r}; allowed values: {allowed}"
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        extra = sorted(str(k) for k in error.instance if k not in known)
        key = f"{path}.{extra[0]}" if path and extra else (extra[0] if extra else path or "<top level>")
        hint = _did_you_mean(extra[0], known, path) if extra else ""
        return f"{where}: unknown key '{key}'{hint}; allowed keys: {', '.join(sorted(known))}"
    if validator == "required" and isinstance(error.instance, dict):
        return f"{where}: {_missing_key(error.instance, error.validator_value, error.schema, path)}"
    if validator in _EXPECTABLE:
        return (f"{where}: key '{path or '<top level>'}' is {error.instance!r}; expected {expected(error.schema)}"
                + _yaml_number_hint(error.instance, error.schema))
    return f"{where}: key '{path or '<top level>'}': {error.message}"


def _dotted(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _did_you_mean(key: str, candidates, path: str) -> str:
    """`` (did you mean 'hparams.lr'?)`` when a candidate is spelt close to ``key``, else nothing."""
    close = difflib.get_close_matches(key, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean '{_dotted(path, close[0])}'?)" if close else ""


def _missing_key(instance: dict, required, schema: dict, path: str) -> str:
    """A required key is missing. If the mapping has an unexpected key spelt close to it (``lrr``
    for ``lr``), that typo is named first, since it is what the user has to fix."""
    missing = next(k for k in required if k not in instance)
    expected_keys = set(schema.get("properties", {})) | set(required)
    unknown = [str(k) for k in instance if k not in expected_keys]
    typo = difflib.get_close_matches(missing, unknown, n=1, cutoff=0.6)
    if typo:
        return (f"unknown key '{_dotted(path, typo[0])}' (did you mean '{_dotted(path, missing)}'?); "
                f"required key '{_dotted(path, missing)}' is missing")
    return f"required key '{_dotted(path, missing)}' is missing"


#: what a float looks like to Python; PyYAML (YAML 1.1) reads it as a number only with a dot in
#: the mantissa and a signed exponent, so ``1e-3``, ``1.0e8`` and ``1E5`` arrive as strings
_NUMBER_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _accepted_types(schema) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    types = schema.get("type", [])
    found = {types} if isinstance(types, str) else set(types)
    for branch in schema.get("anyOf", schema.get("oneOf", [])):
        found |= _accepted_types(branch)
    return found


def yaml_number(text: str, integer: bool = False) -> str:
    """How to write the number ``text`` so that PyYAML reads a number: ``1.0e8`` -> ``1.0e+8``,
    ``1e-3`` -> ``1.0e-3``; with ``integer``, an integral value as digits (``1e2`` -> ``100``)."""
    value = float(text)
    if integer and value.is_integer():
        return str(int(value))
    mantissa, _, exponent = text.lower().partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent and exponent[0] not in "+-":
        exponent = "+" + exponent
    return f"{mantissa}e{exponent}" if exponent else mantissa


def _yaml_number_hint(instance, schema) -> str:
    """`` (YAML reads 1.0e8 as a string, not a number: write 1.0e+8)`` where a number is expected and
    the value is number-like text that YAML 1.1 does not resolve as a number; else nothing."""
    accepted = _accepted_types(schema)
    if not isinstance(instance, str) or not _NUMBER_TEXT.match(instance.strip()) or not accepted & {"number", "integer"}:
        return ""
    if not isinstance(yaml.safe_load(instance), str):  # a quoted number: YAML would read it unquoted
        return f" (a quoted number is a string: write {instance.strip()} without quotes)"
    integer_only = "number" not in accepted
    if integer_only and not float(instance).is_integer():
        return ""
    form = yaml_number(instance.strip(), integer=integer_only)
    return f" (YAML reads {instance.strip()} as a string, not a number: write {form})"


def describe_yaml_error(error, where: str) -> str:
    """A YAML syntax error in one line: ``<where>:<line>:<column>: YAML syntax error: <problem>``
    (lines and columns from 1, as editors count), plus what the parser was reading, if it says."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or " ".join(str(error).split())
    place = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else where
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context_mark and context_mark is not mark:
        context += f" at line {context_mark.line + 1}, column {context_mark.column + 1}"
    return f"{place}: YAML syntax error: {problem}" + (f" ({context})" if context else "")


#: keywords whose failure is told as "expected <what the schema accepts>"
_EXPECTABLE = {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
               "uniqueItems", "const", "minLength", "pattern", "anyOf", "oneOf"}
_NOUNS = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string",
          "array": "a list", "object": "a mapping", "null": "null"}


def _bounds(schema: dict) -> str:
    lo = ("[", schema["minimum"]) if "minimum" in schema else ("(", schema.get("exclusiveMinimum"))
    hi = ("]", schema["maximum"]) if "maximum" in schema else (")", schema.get("exclusiveMaximum"))
    if lo[1] is not None and hi[1] is not None:
        return f" in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo[1] is not None:
        return f" {'>=' if lo[0] == '[' else '>'} {lo[1]}"
    if hi[1] is not None:
        return f" {'<=' if hi[0] == ']' else '<'} {hi[1]}"
    return ""


def expected(schema) -> str:
    """What a (leaf) schema accepts, in words: ``an integer >= 1``, ``null or a number in [0, 1)``,
    ``a non-empty list (each item: an integer >= 1)``, ``'all' or a list (...)`` (anyOf)."""
    if not isinstance(schema, dict):
        return "nothing" if schema is False else "anything"
    if "anyOf" in schema or "oneOf" in schema:
        return " or ".join(expected(s) for s in schema.get("anyOf", schema.get("oneOf")))
    if "pattern" in schema and "title" in schema:   # a pattern that says in its title what it means
        return schema["title"]
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    words = []
    for name in types:
        if name == "null":
            continue
        word = _NOUNS.get(name, name)
        if name in ("integer", "number"):
            word += _bounds(schema)
        elif name == "array":
            n = schema.get("minItems", 0)
            word = "a non-empty list" if n == 1 else (f"a list of at least {n} items" if n else "a list")
            if schema.get("uniqueItems"):
                word += " without repeats"
            if "items" in schema:
                word += f" (each item: {expected(schema['items'])})"
        words.append(word)
    if "null" in types:
        words.insert(0, "null")
    return " or ".join(words) if words else "a valid value"


class DatasetUnavailable(RuntimeError):
    """The dataset is not on this machine and could not be fetched; the message says how."""
