"""The JSON Schemas of schemas/ agree with the engine's validator (docs/metrics.md §1).

Every case's verdict is written here from the catalogue (not from the code): the engine must
give it, and so must the schema. The cases a schema cannot express are checked too, so the list
in docs/producers.md stays true. A seeded random search then compares the two on many records
built from valid and invalid field values.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from streams.errors import Reject
from streams.jsonschemas import FILES, NOT_EXPRESSIBLE, render
from streams.records import decode_product, decode_survey, time_reason

REPO = Path(__file__).resolve().parents[2]
PE, SA = "product-events", "survey-answers"
SCHEMAS = {t: json.loads((REPO / "schemas" / f).read_text()) for t, f in FILES.items()}
VALIDATORS = {t: Draft202012Validator(s) for t, s in SCHEMAS.items()}

EV = {"event_id": "e-1", "type": "page_view", "user_id": "u-1", "ts": "2026-11-20T10:00:00Z",
      "session_id": "s-1"}  # fmt: skip
AN = {"response_id": "r-1", "survey": "nps", "score": 9, "user_id": "u-1",
      "ts": "2026-11-20T10:00:00Z"}  # fmt: skip
MISSING = object()


def ev(**over: Any) -> dict[str, Any]:
    d = {**EV, **over}
    return {k: v for k, v in d.items() if v is not MISSING}


def an(**over: Any) -> dict[str, Any]:
    d = {**AN, **over}
    return {k: v for k, v in d.items() if v is not MISSING}


def engine_reason(topic: str, text: str) -> str | None:
    try:
        (decode_product if topic == PE else decode_survey)(text)
    except Reject as r:
        return r.reason
    return None


def schema_ok(topic: str, text: str) -> bool:
    return VALIDATORS[topic].is_valid(json.loads(text))


def test_the_committed_schema_files_are_what_generate_py_writes() -> None:
    spec = importlib.util.spec_from_file_location("schemas_generate", REPO / "schemas/generate.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    files = gen.generate()
    assert sorted(p.name for p in files) == sorted(FILES.values())
    for path, text in files.items():
        assert path.read_text() == text, (
            f"{path} is stale: run .venv/bin/python schemas/generate.py"
        )
        assert text == render(next(t for t, f in FILES.items() if f == path.name))


@pytest.mark.parametrize("topic", [PE, SA])
def test_the_schemas_are_valid_draft_2020_12(topic: str) -> None:
    Draft202012Validator.check_schema(SCHEMAS[topic])
    assert SCHEMAS[topic]["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# (topic, value, valid?) - the verdicts of docs/metrics.md §1 and docs/decisions.md 1-6.
CASES: list[tuple[str, Any, bool]] = [
    (PE, EV, True),
    (PE, [], False), (PE, "page_view", False), (PE, 42, False), (PE, None, False),
    (PE, ev(event_id=MISSING), False), (PE, ev(type=MISSING), False),
    (PE, ev(user_id=MISSING), False), (PE, ev(ts=MISSING), False),
    (PE, ev(event_id=None), False), (PE, ev(event_id=42), False), (PE, ev(user_id=["u"]), False),
    # the type pattern
    (PE, ev(type="Page View"), False), (PE, ev(type=""), False), (PE, ev(type="1abc"), False),
    (PE, ev(type="a" * 64), True), (PE, ev(type="a" * 65), False),
    (PE, ev(type="my_custom_event"), True), (PE, ev(type="page_view\n"), False),
    (PE, ev(type="page-view"), False), (PE, ev(type="pagé"), False),
    # names: 1-128 code points
    (PE, ev(user_id="u" * 128), True), (PE, ev(user_id="u" * 129), False),
    (PE, ev(user_id=""), False), (PE, ev(user_id="é" * 128), True),
    (PE, ev(event_id="😀" * 128), True), (PE, ev(event_id="😀" * 129), False),
    (PE, ev(account_id=None), True), (PE, ev(account_id=""), False),
    (PE, ev(account_id=5), False), (PE, ev(account_id="acme"), True),
    # ts: epoch ms integer in years 0001-9999, or RFC 3339 with T and an offset
    (PE, ev(ts=1_795_168_800_000), True), (PE, ev(ts=-62_135_596_800_000), True),
    (PE, ev(ts=-62_135_596_800_001), False), (PE, ev(ts=253_402_300_799_999), True),
    (PE, ev(ts=253_402_300_800_000), False), (PE, ev(ts=1.5), False), (PE, ev(ts=True), False),
    (PE, ev(ts=None), False), (PE, ev(ts="1795168800000"), False),
    (PE, ev(ts="2026-11-20 10:00:00Z"), False), (PE, ev(ts="2026-11-20T10:00:00"), False),
    (PE, ev(ts="2026-11-20T10:00:60Z"), False), (PE, ev(ts="2026-11-20T24:00:00Z"), False),
    (PE, ev(ts="2026-11-20T10:60:00Z"), False), (PE, ev(ts="2026-13-01T10:00:00Z"), False),
    (PE, ev(ts="2026-00-01T10:00:00Z"), False), (PE, ev(ts="2026-11-00T10:00:00Z"), False),
    (PE, ev(ts="2026-11-31T10:00:00Z"), False), (PE, ev(ts="2026-12-31T10:00:00Z"), True),
    (PE, ev(ts="2026-02-29T10:00:00Z"), False), (PE, ev(ts="2024-02-29T10:00:00Z"), True),
    (PE, ev(ts="2000-02-29T10:00:00Z"), True), (PE, ev(ts="1900-02-29T10:00:00Z"), False),
    (PE, ev(ts="2400-02-29T10:00:00Z"), True), (PE, ev(ts="0400-02-29T10:00:00Z"), True),
    (PE, ev(ts="0004-02-29T10:00:00Z"), True), (PE, ev(ts="2026-02-28T10:00:00Z"), True),
    (PE, ev(ts="0000-06-01T10:00:00Z"), False), (PE, ev(ts="0001-01-01T00:00:00Z"), True),
    (PE, ev(ts="9999-12-31T23:59:59.999999999999Z"), True), (PE, ev(ts="26-11-20T10:00:00Z"), False),
    (PE, ev(ts="2026-11-20t10:00:00z"), True), (PE, ev(ts="2026-11-20T10:00:00.Z"), False),
    (PE, ev(ts="2026-11-20T10:00:00.123456789012Z"), True),
    (PE, ev(ts="2026-11-20T10:00:00+05:30"), True), (PE, ev(ts="2026-11-20T10:00:00+24:00"), False),
    (PE, ev(ts="2026-11-20T10:00:00+05:60"), False), (PE, ev(ts="2026-11-20T10:00:00+0530"), False),
    (PE, ev(ts="2026-11-20T10:00:00Z\n"), False), (PE, ev(ts="2026-11-20T1:00:00Z"), False),
    (PE, ev(ts="2026-11-20T10:00:00-00:00"), True),
    # sessions
    (PE, ev(session_id=MISSING), False), (PE, ev(session_id=None), False),
    (PE, ev(type="session_start"), True), (PE, ev(type="session_end", session_id=""), False),
    (PE, ev(type="signup", session_id=MISSING), True),
    # props: an object (or null) for every type
    (PE, ev(props=[]), False), (PE, ev(props="x"), False), (PE, ev(props=None), True),
    (PE, ev(props={"anything": [1, {"x": None}]}), True),
    (PE, ev(type="purchase", props={"order_id": "o", "amount": 9.5}), True),
    (PE, ev(type="purchase", props={"order_id": "o", "amount": 0}), True),
    (PE, ev(type="purchase", props={"order_id": "o", "amount": -1}), False),
    (PE, ev(type="purchase", props={"order_id": "o", "amount": "5"}), False),
    (PE, ev(type="purchase", props={"order_id": "o", "amount": True}), False),
    (PE, ev(type="purchase", props={"order_id": "o", "amount": None}), False),
    (PE, ev(type="purchase", props={"order_id": "o"}), False),
    (PE, ev(type="purchase", props={"amount": 1}), False),
    (PE, ev(type="purchase", props=None), False), (PE, ev(type="purchase"), False),
    (PE, ev(type="return", props={"order_id": "o"}), True),
    (PE, ev(type="return", props={"order_id": 7}), False),
    (PE, ev(type="social_interaction", props={"action": "like"}), True),
    (PE, ev(type="social_interaction", props={"action": "poke"}), False),
    (PE, ev(type="social_interaction", props={}), False),
    (PE, ev(type="social_interaction"), False),
    (PE, ev(type="ticket_opened", props={"ticket_id": "t", "category": "billing"}), True),
    (PE, ev(type="ticket_opened", props={"ticket_id": "t"}), False),
    (PE, ev(type="ticket_opened", props={"ticket_id": "t", "category": ""}), False),
    (PE, ev(type="ticket_resolved", props={"ticket_id": "t"}), True),
    (PE, ev(type="ticket_resolved", props={"ticket_id": None}), False),
    (PE, ev(type="onboarding_step", props={"step": "welcome"}), True),
    (PE, ev(type="onboarding_step", props={"step": 5}), False),
    (PE, ev(type="feature_used", props={"feature": "x" * 128}), True),
    (PE, ev(type="feature_used", props={"feature": "x" * 129}), False),
    (PE, ev(type="feature_used", props=None), False),
    (PE, ev(type="click"), True), (PE, ev(type="click", props=None), True),
    (PE, ev(type="click", props={"placement": "hero"}), True),
    (PE, ev(type="click", props={"placement": None}), True),
    (PE, ev(type="click", props={"placement": ""}), False),
    (PE, ev(type="impression", props={"placement": 3}), False),
    (PE, ev(type="page_view", props={"placement": 3, "step": 1, "amount": -1}), True),
    # fields the catalogue does not name (or names for the other topic) are ignored
    (PE, ev(comment=5, score="x", extra={"deep": [1]}), True),
    # survey answers
    (SA, AN, True),
    (SA, [], False), (SA, "x", False),
    (SA, an(score="9"), False), (SA, an(score=True), False), (SA, an(score=None), False),
    (SA, an(score=11), False), (SA, an(score=10), True), (SA, an(score=0), True),
    (SA, an(score=-1), False), (SA, an(survey="csat", score=0), False),
    (SA, an(survey="csat", score=1), True), (SA, an(survey="csat", score=5), True),
    (SA, an(survey="csat", score=6), False), (SA, an(survey="ces", score=7), True),
    (SA, an(survey="ces", score=8), False), (SA, an(survey="ces", score=0), False),
    (SA, an(survey="NPS"), False), (SA, an(survey=None), False), (SA, an(survey=MISSING), False),
    (SA, an(score=MISSING), False), (SA, an(response_id=MISSING), False),
    (SA, an(response_id=""), False), (SA, an(user_id="u" * 129), False),
    (SA, an(ts="2026-11-20T10:00:00"), False), (SA, an(ts=1.5), False),
    (SA, an(comment=5), False), (SA, an(comment=None), True), (SA, an(comment=""), True),
    (SA, an(comment="x" * 1000), True), (SA, an(touchpoint=""), False),
    (SA, an(touchpoint="t" * 129), False), (SA, an(touchpoint="support"), True),
    (SA, an(account_id=None, touchpoint=None), True), (SA, an(account_id=1), False),
    (SA, an(props="ignored", type="Not A Type", session_id=4), True),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "value", "valid"), CASES)
def test_schema_and_engine_give_the_catalogue_verdict(topic: str, value: Any, valid: bool) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert engine_reason(topic, text) == (None if valid else "schema")
    assert VALIDATORS[topic].is_valid(value) is valid, list(VALIDATORS[topic].iter_errors(value))


# What a schema cannot express (streams/jsonschemas.py NOT_EXPRESSIBLE, docs/producers.md):
# the engine rejects these with the reason given; the schema has no say (not JSON) or accepts.
GAPS: list[tuple[str, str, str, bool]] = [
    # (reason, topic, value text, does the schema accept the parsed value?)
    ("too_large", PE, json.dumps(ev(props={"pad": "x" * 66_000})), True),
    ("bad_json", PE, json.dumps(ev(props={"x": float("nan")})), True),  # Python parses NaN
    ("bad_json", PE, "\ufeff" + json.dumps(EV), False),
    ("bad_json", PE, json.dumps(ev(event_id="\ud800")), True),
    ("bad_json", PE, json.dumps(ev(props={"x": [[[[]]]]})).replace("[[[[]]]]", "[" * 63 + "]" * 63), True),
    ("schema", SA, json.dumps(an(score=9.0)), True),
    ("schema", PE, json.dumps(ev(ts=1_795_168_800_000.0)), True),
    ("schema", PE, json.dumps(ev(type="purchase", props={"order_id": "o", "amount": 1})).replace(": 1}", ": 1e400}"), True),
    ("schema", PE, json.dumps(ev(type="purchase", props={"order_id": "o", "amount": 1})).replace(": 1}", ": 1" + "0" * 400 + "}"), True),
    ("schema", PE, json.dumps(ev(ts="0001-01-01T00:30:00+01:00")), True),
    ("schema", PE, json.dumps(ev(ts="9999-12-31T23:30:00-01:00")), True),
]  # fmt: skip


def _parsed(text: str) -> Any:
    if text.startswith("\ufeff"):
        return None  # not JSON at all
    return json.loads(text)


@pytest.mark.parametrize(("reason", "topic", "text", "schema_accepts"), GAPS)
def test_what_a_schema_cannot_express(
    reason: str, topic: str, text: str, schema_accepts: bool
) -> None:
    assert engine_reason(topic, text) == reason
    value = _parsed(text)
    if value is not None:
        assert VALIDATORS[topic].is_valid(value) is schema_accepts


def test_every_gap_reason_is_documented() -> None:
    documented = {reason for reason, _ in NOT_EXPRESSIBLE}
    assert {g[0] for g in GAPS} <= documented
    assert {"future", "too_late"} <= documented
    doc = " ".join((REPO / "docs" / "producers.md").read_text().split())
    for reason, text in NOT_EXPRESSIBLE:
        assert f"| `{reason}` | {text} |" in doc, f"docs/producers.md lacks: {text}"


def test_future_and_too_late_depend_on_the_record_timestamp() -> None:
    # the same value, valid for the schema, is future, fine or too_late by record time alone
    from streams.timeutil import HOUR, parse_rfc3339

    value = EV
    assert VALIDATORS[PE].is_valid(value)
    inst = parse_rfc3339(str(value["ts"]))
    assert inst is not None
    rts = 1_795_168_800_000  # 2026-11-20T10:00:00Z in ms
    lateness = 48 * HOUR
    assert time_reason(inst, rts - 3_600_001, lateness) == "future"
    assert time_reason(inst, rts, lateness) is None
    assert time_reason(inst, rts + 48 * 3_600_000 + 1, lateness) == "too_late"


# ---- a seeded random search: the schema and the engine never disagree -------------------------

NAMES = ["", "a", "u-1", "x" * 128, "x" * 129, "é" * 128, 7, None, True, ["a"], {"a": 1}]
TYPES = ["page_view", "session_start", "purchase", "return", "social_interaction", "click",
         "impression", "ticket_opened", "ticket_resolved", "onboarding_step", "feature_used",
         "signup", "custom_thing", "Bad Type", "", "a" * 65, 3, None]  # fmt: skip
TSS = [1_795_168_800_000, "2026-11-20T10:00:00Z", "2026-11-20T10:00:00.5+01:00", "2024-02-29T00:00:00Z",
       "2026-02-29T00:00:00Z", "2026-11-20 10:00:00Z", "2026-11-20T10:00:00", "x", 1.5, None,
       -62_135_596_800_001, 253_402_300_800_000, "2026-11-20T10:00:61Z", True]  # fmt: skip
AMOUNTS = [0, 1, 9.99, -0.5, "1", None, True, 10**6]
PROPS_VALUES: list[Any] = [None, [], "p", {}]


def _random_props(rnd: random.Random) -> Any:
    if rnd.random() < 0.25:
        return rnd.choice(PROPS_VALUES)
    props: dict[str, Any] = {}
    for key, pool in (
        ("step", NAMES), ("feature", NAMES), ("order_id", NAMES), ("ticket_id", NAMES),
        ("category", NAMES), ("placement", NAMES), ("amount", AMOUNTS),
        ("action", ["like", "share", "save", "poke", None, 1]),
    ):  # fmt: skip
        if rnd.random() < 0.6:
            props[key] = rnd.choice(pool)
    return props


def _random_record(rnd: random.Random, topic: str) -> Any:
    if rnd.random() < 0.03:
        return rnd.choice([[], "x", 1, None])
    if topic == PE:
        fields = {"event_id": NAMES, "type": TYPES, "user_id": NAMES, "ts": TSS,
                  "account_id": NAMES, "session_id": NAMES}  # fmt: skip
        base: dict[str, Any] = dict(EV)
    else:
        fields = {"response_id": NAMES, "survey": ["nps", "csat", "ces", "NPS", None, 1],
                  "score": [-1, 0, 1, 4, 5, 6, 7, 8, 10, 11, "9", None, True],
                  "user_id": NAMES, "ts": TSS, "account_id": NAMES, "touchpoint": NAMES,
                  "comment": ["", "fine", None, 3]}  # fmt: skip
        base = dict(AN)
    for name, pool in fields.items():
        r = rnd.random()
        if r < 0.15:
            base.pop(name, None)
        elif r < 0.45:
            base[name] = rnd.choice(pool)
    if topic == PE and rnd.random() < 0.8:
        base["props"] = _random_props(rnd)
    return base


@pytest.mark.parametrize("topic", [PE, SA])
def test_random_records_schema_and_engine_agree(topic: str) -> None:
    rnd = random.Random(20261120)
    verdicts = {True: 0, False: 0}
    for _ in range(6000):
        value = _random_record(rnd, topic)
        text = json.dumps(value, ensure_ascii=False)
        engine_ok = engine_reason(topic, text) is None
        assert VALIDATORS[topic].is_valid(value) is engine_ok, (value, engine_reason(topic, text))
        verdicts[engine_ok] += 1
    # the search covers both verdicts in earnest
    assert min(verdicts.values()) > 300, verdicts
