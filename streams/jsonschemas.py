"""JSON Schemas (draft 2020-12) of both input topics, built from streams/recordspec.py.

`schemas/generate.py` writes them to `schemas/*.schema.json`; tests/unit/test_schemas.py checks
that the committed files are current and that the schemas and the engine's validator agree.

A JSON Schema judges a parsed JSON value, so it expresses step 3 of the catalogue's checks
(`schema`) but not what the engine decides before or after it. `NOT_EXPRESSIBLE` lists those
cases; docs/producers.md repeats them for producers. Patterns use only the portable subset of
ECMA-262 regular expressions (no lookaround), anchored with `^...$`.
"""

from __future__ import annotations

import json
from typing import Any

from streams.recordspec import (
    AMOUNT_TYPE,
    FIELDS,
    NAME_MAX,
    NAME_MIN,
    PLACEMENT_TYPES,
    PRODUCT_EVENTS,
    PROPS_NAMES,
    SESSION_TYPES,
    SOCIAL_ACTIONS,
    SOCIAL_TYPE,
    SURVEY_ANSWERS,
    SURVEYS,
    TYPE_PATTERN,
    Field,
)
from streams.timeutil import END_MS, MIN_MS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
FILES = {PRODUCT_EVENTS: "product-events.schema.json", SURVEY_ANSWERS: "survey-answers.schema.json"}

# RFC 3339 as the engine reads it (docs/decisions.md 1-2): a 4-digit year 0001-9999, a day that
# exists in its month (29 February only in leap years), hour 00-23, minute and second 00-59, any
# number of fraction digits after a `.`, `T`/`t`, and `Z`/`z` or an offset up to 23:59.
_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_DAY = (
    "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29"
)
_TIME = "[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
_OFFSET = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
RFC3339_PATTERN = f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY}){_TIME}{_OFFSET}$"

# Python's `re` (used by the `jsonschema` package) lets `$` match before a final newline, which
# ECMA-262 does not; refusing any newline in the patterned strings makes both readings agree.
_NO_NEWLINE = {"not": {"pattern": "\\n"}}

NOT_EXPRESSIBLE: tuple[tuple[str, str], ...] = (
    ("too_large", "a value of more than 65,536 bytes: a schema sees the parsed value, not bytes"),
    ("bad_json", "not UTF-8, NaN/Infinity, a byte-order mark, an escaped lone surrogate: the "
     "value is not JSON, so no schema applies"),
    ("bad_json", "more than 64 levels of nesting (anywhere, ignored fields included)"),
    ("bad_json", "repeated member names: the engine keeps the last one; what a schema validator "
     "sees depends on its JSON parser"),
    ("schema", "a float with a zero fraction where an integer is required (`\"score\": 9.0`, "
     "`\"ts\": 1.0`): JSON Schema's `integer` accepts them, the engine does not"),
    ("schema", "a `props.amount` beyond the IEEE double range (`1e400`, or an integer literal "
     "too large for a double): a schema sees a number >= 0"),
    ("schema", "an RFC 3339 `ts` whose offset moves its UTC instant outside years 0001-9999 "
     "(`0001-01-01T00:30:00+01:00`, `9999-12-31T23:30:00-01:00`)"),
    ("future", "`ts` more than 1 hour after the record timestamp: the record timestamp is not "
     "part of the value"),
    ("too_late", "`ts` more than the allowed lateness before the record timestamp"),
)  # fmt: skip


def _name(nullable: bool = False) -> dict[str, Any]:
    s: dict[str, Any] = {"type": ["string", "null"] if nullable else "string"}
    s.update(minLength=NAME_MIN, maxLength=NAME_MAX)
    return s


def _ts() -> dict[str, Any]:
    return {
        "description": "event time: integer epoch milliseconds, or an RFC 3339 date-time with "
        "`T` and an offset (`Z` or +HH:MM), fractions of any precision",
        "anyOf": [
            {"type": "integer", "minimum": MIN_MS, "maximum": END_MS - 1},
            {"type": "string", "pattern": RFC3339_PATTERN, **_NO_NEWLINE},
        ],
    }


def _field(f: Field) -> dict[str, Any]:
    nullable = not f.required  # an optional field that is null is absent (metrics.md §1)
    if f.kind == "name":
        s = _name(nullable)
    elif f.kind == "type":
        s = {"type": "string", "pattern": f"^{TYPE_PATTERN}$", **_NO_NEWLINE}
    elif f.kind == "ts":
        s = _ts()
    elif f.kind == "survey":
        s = {"enum": list(SURVEYS)}
    elif f.kind == "score":
        s = {"type": "integer"}
    elif f.kind == "object":
        s = {"type": ["object", "null"]}
    elif f.kind == "text":
        s = {"type": ["string", "null"]}
    else:  # pragma: no cover - recordspec declares only the kinds above
        raise ValueError(f"unknown field kind {f.kind!r}")
    if f.doc:
        s = {"description": f.doc, **s}
    return s


def _when_type(types: tuple[str, ...] | list[str], then: dict[str, Any]) -> dict[str, Any]:
    cond: dict[str, Any] = {"const": types[0]} if len(types) == 1 else {"enum": list(types)}
    return {"if": {"required": ["type"], "properties": {"type": cond}}, "then": then}


def _props(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": ["props"],
        "properties": {"props": {"type": "object", "required": required, "properties": properties}},
    }


def _base(topic: str, title: str, description: str) -> dict[str, Any]:
    fields = FIELDS[topic]
    return {
        "$schema": DIALECT,
        "$id": f"https://engagement-metrics.local/schemas/{FILES[topic]}",
        "title": title,
        "description": description,
        "type": "object",
        "required": [f.name for f in fields if f.required],
        "properties": {f.name: _field(f) for f in fields},
    }


def product_event_schema() -> dict[str, Any]:
    s = _base(
        PRODUCT_EVENTS,
        "product-events record value",
        "One product event (docs/metrics.md §1). Fields not named here are ignored. Key the "
        "Kafka record by user_id.",
    )
    rules: list[dict[str, Any]] = []
    for t, names in PROPS_NAMES.items():
        rules.append(_when_type([t], _props(list(names), {n: _name() for n in names})))
    rules.append(
        _when_type(
            list(SESSION_TYPES),
            {"required": ["session_id"], "properties": {"session_id": _name()}},
        )
    )
    amount = {"type": "number", "minimum": 0, "description": "a finite number >= 0"}
    rules.append(_when_type([AMOUNT_TYPE], _props(["amount"], {"amount": amount})))
    action = {"enum": list(SOCIAL_ACTIONS)}
    rules.append(_when_type([SOCIAL_TYPE], _props(["action"], {"action": action})))
    rules.append(
        _when_type(
            list(PLACEMENT_TYPES),
            {"properties": {"props": {"properties": {"placement": _name(nullable=True)}}}},
        )
    )
    s["allOf"] = rules
    return s


def survey_answer_schema() -> dict[str, Any]:
    s = _base(
        SURVEY_ANSWERS,
        "survey-answers record value",
        "One survey answer (docs/metrics.md §1). Fields not named here are ignored. Key the "
        "Kafka record by user_id.",
    )
    s["allOf"] = [
        {
            "if": {"required": ["survey"], "properties": {"survey": {"const": name}}},
            "then": {"properties": {"score": {"minimum": lo, "maximum": hi}}},
        }
        for name, (lo, hi) in SURVEYS.items()
    ]
    return s


SCHEMAS = {PRODUCT_EVENTS: product_event_schema, SURVEY_ANSWERS: survey_answer_schema}


def render(topic: str) -> str:
    """The schema file's text (stable: sorted keys are NOT used, to keep the reading order)."""
    return json.dumps(SCHEMAS[topic](), indent=2, ensure_ascii=False) + "\n"
