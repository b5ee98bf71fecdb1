"""Dataset specs: the churn spec loads, and every mistake is reported naming the file and field."""

from __future__ import annotations

import ast
import copy

import pytest
import yaml
from lake_helpers import REPO_ROOT, SPEC_PATH

from spark_jobs.dataset_spec import (
    REASON_CODES,
    SpecError,
    load_spec,
    parse_spec,
    spec_from_mapping,
)


@pytest.fixture(scope="module")
def churn_yaml() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def broken(churn_yaml: dict, change) -> str:
    """The error message of the churn spec after ``change`` mutates a copy of it."""
    raw = copy.deepcopy(churn_yaml)
    change(raw)
    with pytest.raises(SpecError) as raised:
        spec_from_mapping(raw, source="bad.yaml")
    return str(raised.value)


def column(raw: dict, name: str) -> dict:
    return next(c for c in raw["columns"] if c["name"] == name)


def test_the_churn_spec_loads():
    spec = load_spec(SPEC_PATH)
    assert spec.dataset == "churn" and spec.schema_version == 1
    assert spec.primary_key == ("customer_id", "snapshot_date")
    assert (spec.event_time, spec.partition_column, spec.label) == (
        "event_ts",
        "snapshot_date",
        "churned",
    )
    assert {c.name: c.pii.treatment for c in spec.pii_columns} == {
        "email": "hash",
        "phone": "mask",
        "national_id": "drop",
    }
    curated = dict(spec.curated_columns())
    assert curated["email_sha256"] == "string" and curated["tenure_months"] == "int"
    assert "national_id" not in curated and "email" not in curated
    assert spec.alias_map()["tenure"] == "tenure_months"
    assert spec.column("device_model").formula_guard is True
    assert spec.column("plan").formula_guard is False  # an allowed list already constrains it
    assert spec.features.split_bounds() == [
        ("train", 0, 70),
        ("validation", 70, 85),
        ("test", 85, 100),
    ]
    assert load_spec(SPEC_PATH).fingerprint == spec.fingerprint


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r.update(primary_keys=r.pop("primary_key")),
            "bad.yaml: primary_keys: unknown key (did you mean 'primary_key'?)",
        ),
        (
            lambda r: column(r, "plan").update(type="text"),
            "bad.yaml: columns[4] (plan).type: 'text' is not one of",
        ),
        (
            lambda r: column(r, "customer_id").update(nullable=True),
            "bad.yaml: primary_key[0]: 'customer_id' must be nullable: false",
        ),
        (
            lambda r: column(r, "email").update(pattern="[a-"),
            "bad.yaml: columns[18] (email).pattern: is not a valid regex",
        ),
        (
            lambda r: column(r, "monthly_charge").update(allowed=[1.5]),
            "columns[10] (monthly_charge).allowed: must be a non-empty list",
        ),
        (
            lambda r: column(r, "sessions").update(min=10, max=1),
            "columns[13] (sessions): min 10 is greater than max 1",
        ),
        (
            lambda r: column(r, "signup_date").update(min="2026-13-01"),
            "columns[3] (signup_date).min: '2026-13-01' is not a calendar date",
        ),
        (
            lambda r: column(r, "phone")["pii"].update(treatment="encrypt"),
            "columns[19] (phone).pii.treatment: 'encrypt' is not one of hash, mask, drop",
        ),
        (
            lambda r: column(r, "email").update(pattern="(?P<user>.+)@"),
            "uses Python-only named-group syntax",
        ),
        (
            lambda r: r["features"]["numeric"].append("email"),
            "features.numeric[8]: 'email' is PII and cannot be a feature",
        ),
        (
            lambda r: r["features"]["numeric"].append("churned"),
            "features.numeric[8]: 'churned' is the label",
        ),
        (
            lambda r: r["features"]["split"].update(test=20),
            "features.split: shares must add up to 100, got 105",
        ),
        (
            lambda r: r.update(event_time="signup_date"),
            "event_time: 'signup_date' has type date; expected timestamp",
        ),
        (lambda r: r["landing"]["csv"].update(header=False), "landing.csv.header: must be true"),
        (
            lambda r: r["columns"].append({"name": "tenure", "type": "int"}),
            "name or alias 'tenure' is already used",
        ),
    ],
)
def test_mistakes_name_the_file_and_the_field(churn_yaml, change, message):
    assert message in broken(churn_yaml, change)


def test_every_problem_is_reported_at_once(churn_yaml):
    def many(raw):
        raw["schema_version"] = 0
        column(raw, "plan")["type"] = "text"
        column(raw, "phone")["pii"]["treatment"] = "encrypt"

    text = broken(churn_yaml, many)
    assert text.count("bad.yaml:") == 4  # the heading and three problems
    assert "schema_version: must be a positive integer, got 0" in text


def test_unquoted_yes_and_no_in_a_spec_get_the_fix(churn_yaml):
    """YAML reads ``allowed: [yes, no]`` as booleans; the error says to quote them."""
    text = yaml.safe_dump(copy.deepcopy(churn_yaml)).replace(
        "allowed:\n  - basic", "allowed:\n  - yes\n  - no\n  - basic", 1
    )
    assert "- yes" in text  # the plan column's allowed values, now with two unquoted words
    with pytest.raises(SpecError) as raised:
        parse_spec(text, source="bad.yaml")
    assert (
        "bad.yaml: columns[4] (plan).allowed: values [True, False] are not string: YAML reads "
        'unquoted yes, no, on, off, true and false as booleans; quote them ("yes", "no")'
    ) in str(raised.value)
    quoted = text.replace("- yes\n  - no\n", "- 'yes'\n  - 'no'\n", 1)
    assert parse_spec(quoted, source="ok.yaml").column("plan").allowed[:2] == ("yes", "no")


def test_yaml_errors_and_missing_files_name_the_source(tmp_path):
    with pytest.raises(SpecError, match=r"oops\.yaml: not valid YAML at line \d+, column \d+"):
        parse_spec("dataset: churn\ncolumns: [unclosed\n", source="oops.yaml")
    missing = tmp_path / "absent.yaml"
    with pytest.raises(SpecError, match=r"absent\.yaml: cannot read the file"):
        load_spec(missing)


def test_reason_codes_are_documented():
    assert "duplicate_key" in REASON_CODES and "malformed_record" in REASON_CODES
    assert all(text for text in REASON_CODES.values())


def test_spark_jobs_import_nothing_from_the_other_trees():
    """spark_jobs ships alone to Glue/EMR: no include/, dags/, plugins/ or airflow imports."""
    forbidden = ("include", "dags", "plugins", "airflow", "headrace_operators", "training")
    for path in sorted((REPO_ROOT / "spark_jobs").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (None, ("files", 1)),
        ({"files": 3}, ("files", 3)),
        ({"marker": "_SUCCESS"}, ("marker", "_SUCCESS")),
        ({"cutoff_hours": 2.5}, ("cutoff_hours", 2.5)),
    ],
)
def test_the_landing_completeness_rule(churn_yaml, rule, expected):
    raw = copy.deepcopy(churn_yaml)
    raw["landing"].pop("complete_when", None)
    if rule is not None:
        raw["landing"]["complete_when"] = rule
    assert spec_from_mapping(raw, source="ok.yaml").landing_complete_when == expected


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({}, "landing.complete_when: needs exactly one of files, marker, cutoff_hours"),
        ({"files": 2, "marker": "_SUCCESS"}, "needs exactly one of"),
        ({"files": 0}, "landing.complete_when.files: must be a whole number of files >= 1"),
        ({"marker": "done.txt"}, "landing.complete_when.marker: must be a file name starting"),
        ({"cutoff_hours": "2h"}, "landing.complete_when.cutoff_hours: must be hours"),
        ({"when": 1}, "landing.complete_when"),
    ],
)
def test_a_bad_completeness_rule_is_named(churn_yaml, rule, message):
    assert message in broken(churn_yaml, lambda raw: raw["landing"].update(complete_when=rule))


def test_sweep_days_is_checked(churn_yaml):
    message = broken(churn_yaml, lambda raw: raw["landing"].update(sweep_days=0))
    assert "landing.sweep_days: must be a whole number of days 1..366, got 0" in message


def day_from_landing_folder(raw: dict) -> None:
    """Churn as a dataset whose files carry no date: its day comes from the landing folder."""
    raw["day_from"] = "landing_folder"
    raw["columns"] = [c for c in raw["columns"] if c["name"] != "snapshot_date"]


def test_a_day_from_the_landing_folder_is_a_column_the_files_need_not_carry(churn_yaml):
    raw = copy.deepcopy(churn_yaml)
    day_from_landing_folder(raw)
    del raw["event_time"]  # optional once the day is the folder's
    spec = spec_from_mapping(raw, source="ok.yaml")
    assert (spec.day_from, spec.partition_column, spec.event_time) == (
        "landing_folder",
        "snapshot_date",
        None,
    )
    day = spec.column("snapshot_date")
    assert (day.type, day.nullable, day.pii, day.aliases) == ("date", False, None, ())
    # The ingest job adds it after the declared columns; files are read without it.
    assert spec.column_names[-1] == "snapshot_date"
    assert spec.landing_column_names == spec.column_names[:-1]
    assert "snapshot_date" not in spec.alias_map() and spec.alias_map()["tenure"] == "tenure_months"
    # Downstream sees the same curated columns and key as when the files carry the day.
    churn = load_spec(SPEC_PATH)
    assert sorted(spec.curated_columns()) == sorted(churn.curated_columns())
    assert spec.primary_key == churn.primary_key
    assert spec.fingerprint != churn.fingerprint


def test_the_day_comes_from_a_column_by_default(churn_yaml):
    spec = load_spec(SPEC_PATH)
    assert spec.day_from == "column" and spec.landing_columns == spec.columns
    explicit = copy.deepcopy(churn_yaml)
    explicit["day_from"] = "column"
    assert spec_from_mapping(explicit, source="ok.yaml").columns == spec.columns


def test_an_event_time_is_still_checked_with_a_day_from_the_landing_folder(churn_yaml):
    raw = copy.deepcopy(churn_yaml)
    day_from_landing_folder(raw)
    assert spec_from_mapping(raw, source="ok.yaml").event_time == "event_ts"
    message = broken(raw, lambda r: r.update(event_time="signup_date"))
    assert "bad.yaml: event_time: 'signup_date' has type date; expected timestamp" in message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r.update(day_from="folder"),
            "bad.yaml: day_from: must be column (the partition column is a date column of every "
            "file) or landing_folder (the ingest job adds it from the landing folder's "
            "ds=YYYY-MM-DD), got 'folder'",
        ),
        (
            lambda r: r.update(day_form="landing_folder"),
            "bad.yaml: day_form: unknown key (did you mean 'day_from'?)",
        ),
        (
            lambda r: r.pop("event_time"),
            "bad.yaml: event_time: is required",
        ),
        (
            lambda r: r.update(day_from="landing_folder"),
            "bad.yaml: columns[1] (snapshot_date): 'snapshot_date' is the partition column, and "
            "day_from: landing_folder has the ingest job add it from the landing folder "
            "(ds=YYYY-MM-DD): remove it from columns, or set day_from: column to read it from "
            "the files",
        ),
        (
            lambda r: (
                day_from_landing_folder(r),
                column(r, "signup_date").update(aliases=["snapshot_date"]),
            ),
            "bad.yaml: columns[2] (signup_date).aliases: 'snapshot_date' is the partition column "
            "the ingest job adds (day_from: landing_folder)",
        ),
        (
            lambda r: (
                day_from_landing_folder(r),
                column(r, "email")["pii"].update(output="snapshot_date"),
            ),
            "bad.yaml: columns[17] (email).pii.output: 'snapshot_date' is the partition column",
        ),
        (
            lambda r: (day_from_landing_folder(r), r.update(primary_key=["customer_id"])),
            "bad.yaml: partition_column: 'snapshot_date' must be part of primary_key",
        ),
    ],
)
def test_day_from_mistakes_name_the_file_and_the_key(churn_yaml, change, message):
    assert message in broken(churn_yaml, change)


def test_a_bad_day_from_is_the_only_problem_reported(churn_yaml):
    """A misspelt value is reported once, not again as an undeclared partition column."""

    def misspelt(raw):
        day_from_landing_folder(raw)
        raw["day_from"] = "landing-folder"

    text = broken(churn_yaml, misspelt)
    assert text.count("bad.yaml:") == 2  # the heading and the one problem
    assert "bad.yaml: day_from: must be column" in text and "got 'landing-folder'" in text
