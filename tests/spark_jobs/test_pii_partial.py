"""PII detection on hostile text: values cut off at the end of a line are found, and searching a
very long line stays linear (the guard changes no match)."""

from __future__ import annotations

import re

import pytest

from spark_jobs.dataset_spec import (
    PARTIAL_MIN_CHARS,
    SpecError,
    partial_detect_pattern,
    search_pattern,
    spec_from_mapping,
)


@pytest.fixture(scope="module")
def detect(spec) -> dict[str, str]:
    return {column.name: column.pii.detect for column in spec.pii_columns}


@pytest.mark.parametrize(
    ("kind", "text", "found"),
    [
        ("phone", "C900000001,Pixel 8,x@y.com,+1-555-37", "+1-555-37"),
        ("phone", '"phone": "+1-555-867', "+1-555-867"),
        ("phone", "…,+1-555-867-5309", "+1-555-867-5309"),
        ("national_id", "Pixel 8,,934-56-7", "934-56-7"),
        ("national_id", "Pixel 8,,934-5", "934-5"),
        ("email", "Pixel 8,cut.carla@exa", "cut.carla@exa"),
        ("email", "Pixel 8,cut.carla", "cut.carla"),
    ],
)
def test_cut_off_values_are_found_at_the_end(detect, kind, text, found):
    match = re.search(partial_detect_pattern(detect[kind]), text)
    assert match and match.group() == found


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("phone", "…,2319.42"),  # a charge: not the start of a phone number
        ("phone", "…,2026-03-01"),
        ("national_id", "…,2026-03-01"),
        ("phone", "…,58"),  # shorter than PARTIAL_MIN_CHARS
        ("phone", "+1-555-37 is not at the end,"),
        ("phone", "C900000001,Pixel 8"),
    ],
)
def test_other_endings_are_left_alone(detect, kind, text):
    assert re.search(partial_detect_pattern(detect[kind]), text) is None
    assert PARTIAL_MIN_CHARS == 4


def test_a_detect_regex_the_derivation_cannot_take_is_refused_naming_the_field():
    column = {
        "name": "email",
        "type": "string",
        "pii": {"treatment": "hash", "detect": "(?=x)[a-z]+@"},
    }
    raw = {
        "dataset": "d",
        "schema_version": 1,
        "primary_key": ["id"],
        "event_time": "ts",
        "partition_column": "day",
        "label": "y",
        "columns": [
            {"name": "id", "type": "string", "nullable": False},
            {"name": "ts", "type": "timestamp", "nullable": False},
            {"name": "day", "type": "date", "nullable": False},
            {"name": "y", "type": "int", "nullable": False},
            column,
        ],
    }
    with pytest.raises(SpecError, match=r"columns\[4\] \(email\)\.pii\.detect: cannot derive"):
        spec_from_mapping(raw, "t.yaml")


def test_the_search_guard_changes_no_match_and_keeps_long_words_cheap(spark, detect):
    from pyspark.sql import functions as F

    email = detect["email"]
    guarded = search_pattern(email)
    assert guarded.startswith("(?:\\G|(?<![") and guarded.endswith(email)
    texts = [
        "a@b_c@d and x.y@z.org, q+r@s",
        "no address here",
        "@@a@@b@",
    ]
    # The unguarded pattern, in Python's re, is what is quadratic on a long word (38 s here on
    # this one), so this text's expected value is written out.
    long_word = "x" * 200_000 + " tail a@b.c"
    frame = spark.createDataFrame([(t,) for t in [*texts, long_word]], "t string")
    got = [row[0] for row in frame.select(F.regexp_replace("t", guarded, "[pii]")).collect()]
    assert got == [*(re.sub(email, "[pii]", t) for t in texts), "x" * 200_000 + " tail [pii]"]
