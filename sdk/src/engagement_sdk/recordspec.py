"""The shape of the two input records, declared once (docs/metrics.md §1).

The validator (`engagement_sdk.records`), the JSON Schema files of the engagement-metrics
repository (`streams/jsonschemas.py`, written to `schemas/` by `schemas/generate.py`) and the
builders (`engagement_sdk.builders`) all read these definitions, so they cannot drift apart; tests/unit/test_schemas.py checks that the schemas and
the validator agree on every bad case of the catalogue. Pure data: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

PRODUCT_EVENTS = "product-events"
SURVEY_ANSWERS = "survey-answers"

# Every id and name (event_id, user_id, account_id, session_id, response_id, touchpoint and the
# props fields of PROPS_NAMES) is a JSON string of NAME_MIN..NAME_MAX code points.
NAME_MIN = 1
NAME_MAX = 128

# The event type: a lower-case identifier of 1-64 characters.
TYPE_PATTERN = r"[a-z][a-z0-9_]{0,63}"

# type -> props fields that must be names (strings of 1-128 code points); props is required.
PROPS_NAMES: dict[str, tuple[str, ...]] = {
    "onboarding_step": ("step",),
    "feature_used": ("feature",),
    "purchase": ("order_id",),
    "return": ("order_id",),
    "ticket_opened": ("ticket_id", "category"),
    "ticket_resolved": ("ticket_id",),
}
# types that need a session_id
SESSION_TYPES: tuple[str, ...] = ("session_start", "session_end", "page_view")
# types with an optional props.placement (a name, checked when present and not null)
PLACEMENT_TYPES: tuple[str, ...] = ("click", "impression")
# the purchase's props.amount: a JSON number >= 0 that is a finite IEEE double
AMOUNT_TYPE = "purchase"
# social_interaction's props.action, one of SOCIAL_ACTIONS
SOCIAL_TYPE = "social_interaction"
SOCIAL_ACTIONS: tuple[str, ...] = ("like", "share", "comment", "mention", "save")
# survey -> (lowest, highest) integer score
SURVEYS: dict[str, tuple[int, int]] = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}

# The other types with a meaning in the catalogue (any type matching TYPE_PATTERN is accepted
# as a custom activity event).
OTHER_TYPES: tuple[str, ...] = (
    "signup",
    "profile_completed",
    "key_action",
    "subscription_started",
    "subscription_cancelled",
)
KNOWN_TYPES: tuple[str, ...] = (
    *OTHER_TYPES,
    *PROPS_NAMES,
    *SESSION_TYPES,
    *PLACEMENT_TYPES,
    SOCIAL_TYPE,
)


@dataclass(frozen=True)
class Field:
    """A top-level field of a record value. `kind`: name, type, ts, survey, score, object, text."""

    name: str
    kind: str
    required: bool = False
    doc: str = ""


PRODUCT_FIELDS: tuple[Field, ...] = (
    Field("event_id", "name", True, "unique per user; a repeated (user_id, event_id) is a duplicate"),
    Field("type", "type", True, "the event type; see the catalogue for the types with a meaning"),
    Field("user_id", "name", True, "the user; also the record key"),
    Field("ts", "ts", True, "event time: epoch milliseconds, or RFC 3339 with an offset"),
    Field("account_id", "name", False, "the customer account; the user is their own customer without one"),
    Field("session_id", "name", False, "required by session_start, session_end, page_view"),
    Field("props", "object", False, "per-type properties"),
)  # fmt: skip

SURVEY_FIELDS: tuple[Field, ...] = (
    Field("response_id", "name", True, "unique per user; a repeated (user_id, response_id) is a duplicate"),
    Field("survey", "survey", True, "csat (1-5), nps (0-10) or ces (1-7)"),
    Field("score", "score", True, "a JSON integer in the survey's range"),
    Field("user_id", "name", True, "the user; also the record key"),
    Field("ts", "ts", True, "event time: epoch milliseconds, or RFC 3339 with an offset"),
    Field("account_id", "name", False, "the customer account"),
    Field("touchpoint", "name", False, "where the survey was answered (support, checkout, ...)"),
    Field("comment", "text", False, "free text, any length"),
)  # fmt: skip

FIELDS: dict[str, tuple[Field, ...]] = {
    PRODUCT_EVENTS: PRODUCT_FIELDS,
    SURVEY_ANSWERS: SURVEY_FIELDS,
}
