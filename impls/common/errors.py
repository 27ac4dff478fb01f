"""Errors that reach the user: one sentence naming what is wrong and what is allowed."""
from __future__ import annotations


class SpecError(ValueError):
    """A config, paper.yaml or run spec is invalid. The message names the key."""


def describe_schema_error(error, where: str) -> str:
    """Turn a ``jsonschema.ValidationError`` into a one-line message naming the key.

    ``where`` names the document ("config", "papers/nodepert/paper.yaml", "run spec").
    """
    path = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    validator = error.validator
    if validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"{where}: key '{path}' is {error.instance!r}; allowed values: {allowed}"
    if validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"{where}: at '{path}': {error.message}; allowed keys: {allowed}"
    if validator == "required":
        return f"{where}: at '{path}': {error.message}"
    return f"{where}: key '{path}': {error.message}"


class DatasetUnavailable(RuntimeError):
    """The dataset is not on this machine and could not be fetched; the message says how."""
