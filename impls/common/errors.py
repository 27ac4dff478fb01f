"""Errors that reach the user: one sentence naming what is wrong and what is allowed."""
from __future__ import annotations


class SpecError(ValueError):
    """A config, paper.yaml or run spec is invalid. The message names the key."""


def describe_schema_error(error, where: str) -> str:
    """Turn a ``jsonschema.ValidationError`` into a one-line message naming the key.

    ``where`` names the document ("config", "papers/nodepert/paper.yaml", "run spec"). Forms:
    ``<where>: key 'k' is v; allowed values: a, b`` (enum), ``<where>: unknown key 'k.x'; allowed keys:
    ...`` (additionalProperties), ``<where>: key 'k' is v; expected <what the schema at k accepts>``.
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
        return f"{where}: unknown key '{key}'; allowed keys: {', '.join(sorted(known))}"
    if validator == "required":
        return f"{where}: at '{path or '<top level>'}': {error.message}"
    if validator in _EXPECTABLE:
        return f"{where}: key '{path or '<top level>'}' is {error.instance!r}; expected {expected(error.schema)}"
    return f"{where}: key '{path or '<top level>'}': {error.message}"


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
