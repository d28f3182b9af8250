"""The shape of the two input records, declared once (docs/metrics.md §1).

The definitions are the producer SDK's (sdk/src/engagement_sdk/recordspec.py), read by the
validator, the builders and the JSON Schemas (streams/jsonschemas.py); this module re-exports
them."""

from __future__ import annotations

from engagement_sdk.recordspec import (
    AMOUNT_TYPE,
    FIELDS,
    KNOWN_TYPES,
    NAME_MAX,
    NAME_MIN,
    OTHER_TYPES,
    PLACEMENT_TYPES,
    PRODUCT_EVENTS,
    PRODUCT_FIELDS,
    PROPS_NAMES,
    SESSION_TYPES,
    SOCIAL_ACTIONS,
    SOCIAL_TYPE,
    SURVEY_ANSWERS,
    SURVEY_FIELDS,
    SURVEYS,
    TYPE_PATTERN,
    Field,
)

__all__ = [
    "AMOUNT_TYPE",
    "FIELDS",
    "KNOWN_TYPES",
    "NAME_MAX",
    "NAME_MIN",
    "OTHER_TYPES",
    "PLACEMENT_TYPES",
    "PRODUCT_EVENTS",
    "PRODUCT_FIELDS",
    "PROPS_NAMES",
    "SESSION_TYPES",
    "SOCIAL_ACTIONS",
    "SOCIAL_TYPE",
    "SURVEYS",
    "SURVEY_ANSWERS",
    "SURVEY_FIELDS",
    "TYPE_PATTERN",
    "Field",
]
