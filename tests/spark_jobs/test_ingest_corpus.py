"""The ingest job against a poisoned landing folder: one file per defect kind, exact outcomes.

Every file's rows read must equal accepted + quarantined, every quarantined row must carry a
known reason code, and the job must neither crash on bad input nor skip any of it; a file that
cannot be read at all (a truncated gzip) fails the job with its name.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from lake_helpers import (
    COLUMNS,
    TEST_SALT,
    all_text,
    csv_line,
    csv_text,
    json_line,
    lake_paths,
    planted_pii,
    read_rows,
    record,
)

from spark_jobs.dataset_spec import REASON_CODES
from spark_jobs.ingest import IngestError, run_ingest

pytestmark = pytest.mark.e2e

DS = "2026-02-01"

# file → (rows read, rows accepted, {reason: rows}); None where the outcome is checked apart.
EXPECTED: dict[str, tuple[int, int, dict[str, int]] | None] = {
    "a_bom.csv": (3, 3, {}),
    "b_nul_bytes.csv": (3, 1, {"bad_encoding:device_model": 1, "type_mismatch:tenure_months": 1}),
    # RFC 4180: one record (its line break is a control character in free text).
    "c_embedded_newline.csv": (2, 1, {"bad_encoding:device_model": 1}),
    "d_semicolon.csv": (2, 0, {"header_mismatch": 2}),
    "e_formula.csv": (6, 1, {"formula_injection:device_model": 4, "pii_detected:device_model": 1}),
    "f_nonfinite.csv": (
        4,
        1,
        {
            "non_finite:monthly_charge": 1,
            "non_finite:minutes_used": 1,
            "non_finite:total_charges": 1,
        },
    ),
    "g_nonfinite.jsonl": (
        5,
        1,
        {
            "non_finite:monthly_charge": 1,
            "non_finite:minutes_used": 1,
            "non_finite:data_gb": 1,
            "non_finite:total_charges": 1,
        },
    ),
    "h_dupes_1.csv": None,
    "h_dupes_2.jsonl": None,
    "i_empty.csv": (0, 0, {}),
    "j_header_only.csv": (0, 0, {}),
    "k_extra_column.csv": (2, 2, {}),
    "l_missing_required.csv": (2, 0, {"missing_column:plan": 2}),
    "m_missing_nullable.csv": (1, 1, {}),
    "n_renamed.csv": (1, 1, {}),
    "o_dates.csv": (
        6,
        0,
        {
            "out_of_range:signup_date": 3,
            "type_mismatch:signup_date": 1,
            "type_mismatch:event_ts": 1,
            "partition_mismatch": 1,
        },
    ),
    "p_latin1.csv": (2, 1, {"bad_encoding:device_model": 1}),
    "q_crlf.csv": (2, 2, {}),
    "r_bad_json.jsonl": (4, 1, {"malformed_record": 3}),
    "s_gzipped.csv.gz": (2, 2, {}),
    "t_types.csv": (
        4,
        0,
        {
            "type_mismatch:tenure_months": 1,
            "type_mismatch:monthly_charge": 1,
            "type_mismatch:autopay": 1,
            "type_mismatch:sessions": 1,
        },
    ),
    "u_nulls.csv": (
        4,
        1,
        {"required_null:customer_id": 1, "required_null:plan": 1, "required_null:churned": 1},
    ),
    "v_rules.csv": (
        5,
        0,
        {
            "out_of_range:tenure_months": 1,
            "not_allowed:plan": 1,
            "not_allowed:churned": 1,
            "pattern_mismatch:email": 1,
            "too_long:device_model": 1,
        },
    ),
    "w_whitespace.csv": (1, 1, {}),
}


def write_corpus(day_dir: Path) -> None:
    """The poisoned landing folder of one day."""
    day_dir.mkdir(parents=True)
    r = lambda n, **kw: record(n, DS, **kw)  # noqa: E731 - a short alias keeps the corpus readable
    files: dict[str, bytes] = {}
    files["a_bom.csv"] = b"\xef\xbb\xbf" + csv_text([r(1), r(2), r(3)]).encode()
    files["b_nul_bytes.csv"] = csv_text(
        [r(4), r(5, device_model="Pix\x00el"), r(6, tenure_months="5\x008")]
    ).encode()
    # A quoted line break: two physical lines, one record.
    files["c_embedded_newline.csv"] = csv_text([r(7), r(8, device_model="Pixel\n8 Pro")]).encode()
    files["d_semicolon.csv"] = (
        ";".join(COLUMNS)
        + "\n"
        + "\n".join(";".join(v or "" for v in r(n).values()) for n in (9, 10))
        + "\n"
    ).encode()
    files["e_formula.csv"] = csv_text(
        [
            r(11, device_model="=cmd|' /C calc'!A0"),
            r(12, device_model="@SUM(A1:A9)"),
            r(13, device_model="+1+2"),
            r(14, device_model="-2+3"),
            r(15, device_model="ask corpus.friend15@example.com"),
            r(16),
        ]
    ).encode()
    files["f_nonfinite.csv"] = csv_text(
        [
            r(17, monthly_charge="NaN"),
            r(18, minutes_used="Infinity"),
            r(19, total_charges="-inf"),
            r(20),
        ]
    ).encode()
    nonfinite_json = [
        json_line(r(21)).replace('"monthly_charge": 39.99', '"monthly_charge": NaN'),
        json_line(r(22, minutes_used="Infinity")),
        json_line(r(23)).replace('"data_gb": 2.5', '"data_gb": -Infinity'),
        json_line(r(24)).replace('"total_charges": 2319.42', '"total_charges": 1e400'),
        json_line(r(25)),
    ]
    files["g_nonfinite.jsonl"] = ("\n".join(nonfinite_json) + "\n").encode()
    # Key 26: an 08:00 version, and the 12:00 version sent twice (once per file); key 27: two
    # different records with the same event time (the content hash decides).
    early = r(26, event_ts=f"{DS}T08:00:00Z", minutes_used="10")
    late = r(26, event_ts=f"{DS}T12:00:00Z", minutes_used="20")
    files["h_dupes_1.csv"] = csv_text([early, late, r(27, minutes_used="30"), r(28)]).encode()
    files["h_dupes_2.jsonl"] = (
        json_line(late) + "\n" + json_line(r(27, minutes_used="31")) + "\n"
    ).encode()
    files["i_empty.csv"] = b""
    files["j_header_only.csv"] = (",".join(COLUMNS) + "\n").encode()
    extra = [*COLUMNS, "promo_code"]
    files["k_extra_column.csv"] = csv_text(
        [dict(r(29), promo_code="SPRING25"), dict(r(30), promo_code="")], extra
    ).encode()
    without_plan = [c for c in COLUMNS if c != "plan"]
    files["l_missing_required.csv"] = csv_text([r(31), r(32)], without_plan).encode()
    without_data = [c for c in COLUMNS if c != "data_gb"]
    files["m_missing_nullable.csv"] = csv_text([r(33)], without_data).encode()
    renamed = ["tenure" if c == "tenure_months" else c for c in COLUMNS]
    files["n_renamed.csv"] = (
        ",".join(renamed) + "\n" + csv_line(r(34, tenure_months="7")) + "\n"
    ).encode()
    files["o_dates.csv"] = csv_text(
        [
            r(35, signup_date="1899-12-31"),
            r(36, signup_date="2099-01-01"),
            r(37, signup_date="2026-02-30"),
            r(38, snapshot_date="2026-01-31"),
            r(39, event_ts=f"{DS}T25:00:00Z"),
            r(40, signup_date="0001-01-01"),
        ]
    ).encode()
    files["p_latin1.csv"] = csv_text([r(41, device_model="Café TV"), r(42)]).encode("latin-1")
    files["q_crlf.csv"] = csv_text([r(43), r(44)], newline="\r\n").encode()
    bad_json = [
        json_line(r(45)),
        '{"customer_id": "C900000046", "snapsh',
        "42",
        '{"customer_id": "C900000047", "plan": "basic"',
    ]
    files["r_bad_json.jsonl"] = ("\n".join(bad_json) + "\n").encode()
    files["s_gzipped.csv.gz"] = gzip.compress(csv_text([r(48), r(49)]).encode(), mtime=0)
    files["t_types.csv"] = csv_text(
        [
            r(50, tenure_months="twelve"),
            r(51, monthly_charge="1,234.50"),
            r(52, autopay="maybe"),
            r(53, sessions="3.7"),
        ]
    ).encode()
    files["u_nulls.csv"] = csv_text(
        [r(54, customer_id=""), r(55, plan="NULL"), r(56, churned=""), r(57, total_charges="")]
    ).encode()
    files["v_rules.csv"] = csv_text(
        [
            r(58, tenure_months="601"),
            r(59, plan="platinum"),
            r(60, churned="2"),
            r(61, email="not-an-email"),
            r(62, device_model="x" * 65),
        ]
    ).encode()
    files["w_whitespace.csv"] = csv_text(
        [r(63, plan=" standard ", tenure_months=" 58 ", churned=" 1")]
    ).encode()
    for name, data in files.items():
        (day_dir / name).write_bytes(data)
    # A producer's completion marker: not data, listed as ignored.
    (day_dir / "_SUCCESS").write_bytes(b"")


@pytest.fixture(scope="module")
def corpus_run(spark, spec, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    landing = root / "landing"
    write_corpus(landing / "churn" / f"ds={DS}")
    lake = root / "lake"
    result = run_ingest(
        spark, spec, landing_uri=str(landing), ds=DS, lake_root=lake.as_uri(), pii_salt=TEST_SALT
    )
    return result, landing, lake


def by_name(result) -> dict[str, dict]:
    return {entry["name"]: entry for entry in result.manifest["inputs"]}


def test_every_file_is_accounted_for_exactly(corpus_run):
    result, _, _ = corpus_run
    inputs = by_name(result)
    assert sorted(inputs) == sorted(EXPECTED)
    assert result.manifest["ignored_files"] == ["_SUCCESS"]
    for name, expected in EXPECTED.items():
        entry = inputs[name]
        assert entry["rows_read"] == entry["rows_accepted"] + entry["rows_quarantined"], name
        if expected is None:
            continue
        rows_read, accepted, reasons = expected
        assert (entry["rows_read"], entry["rows_accepted"]) == (rows_read, accepted), name
        assert entry["quarantined_by_reason"] == reasons, name


def test_duplicates_across_files_keep_the_latest_record(corpus_run):
    result, _, lake = corpus_run
    inputs = by_name(result)
    first, second = inputs["h_dupes_1.csv"], inputs["h_dupes_2.jsonl"]
    assert first["rows_read"] + second["rows_read"] == 6
    assert first["rows_accepted"] + second["rows_accepted"] == 3
    dupes = Counter(first["quarantined_by_reason"]) + Counter(second["quarantined_by_reason"])
    assert dupes == {"duplicate_key": 3}

    curated = {row["customer_id"]: row for row in read_rows(lake_paths(lake, DS)["curated"])}
    assert curated["C900000026"]["minutes_used"] == 20.0
    assert curated["C900000026"]["event_ts"].hour == 12
    assert curated["C900000027"]["minutes_used"] in (30.0, 31.0)


def test_totals_and_reason_codes(corpus_run):
    result, _, lake = corpus_run
    totals = result.manifest["totals"]
    expected_accepted = sum(e[1] for e in EXPECTED.values() if e) + 3
    assert totals["rows_accepted"] == expected_accepted
    assert totals["rows_read"] == totals["rows_accepted"] + totals["rows_quarantined"]

    paths = lake_paths(lake, DS)
    curated, quarantine = read_rows(paths["curated"]), read_rows(paths["quarantine"])
    assert len(curated) == totals["rows_accepted"]
    assert len(quarantine) == totals["rows_quarantined"]
    assert Counter(row["reason"] for row in quarantine) == Counter(totals["quarantined_by_reason"])
    for row in quarantine:
        assert row["reason"].split(":")[0] in REASON_CODES
        assert row["reasons"][0] == row["reason"]
        assert row["raw_record"] and len(row["raw_record_sha256"]) == 64
        assert row["source_file"] in EXPECTED
    # Curated keys are unique, and every row belongs to the logical date.
    keys = [(row["customer_id"], row["snapshot_date"].isoformat()) for row in curated]
    assert len(keys) == len(set(keys))
    assert {k[1] for k in keys} == {DS}


def test_schema_drift_is_reported_and_handled(corpus_run):
    result, _, lake = corpus_run
    drift = {entry["file"]: entry for entry in result.manifest["schema_drift"]}
    assert drift["k_extra_column.csv"]["extra_columns"] == ["promo_code"]
    assert drift["l_missing_required.csv"]["missing_columns"] == ["plan"]
    assert drift["m_missing_nullable.csv"]["missing_columns"] == ["data_gb"]
    assert drift["n_renamed.csv"]["renamed_columns"] == {"tenure": "tenure_months"}
    assert drift["d_semicolon.csv"]["header_mismatch"] is True
    assert "a_bom.csv" not in drift  # a BOM is not drift

    curated = {row["customer_id"]: row for row in read_rows(lake_paths(lake, DS)["curated"])}
    assert curated["C900000034"]["tenure_months"] == 7  # read through the alias
    assert curated["C900000033"]["data_gb"] is None
    assert "promo_code" not in curated["C900000029"]
    # BOM, CRLF, gzip and padding read as clean values.
    assert curated["C900000001"]["customer_id"] == "C900000001"
    assert curated["C900000044"]["churned"] == 0
    assert curated["C900000049"]["plan"] == "standard"
    assert curated["C900000063"]["plan"] == "standard"
    assert curated["C900000063"]["tenure_months"] == 58
    assert curated["C900000063"]["churned"] == 1
    assert curated["C900000057"]["total_charges"] is None


def test_manifest_checksums_match_the_bytes(corpus_run):
    import hashlib

    result, landing, lake = corpus_run
    day_dir = landing / "churn" / f"ds={DS}"
    for entry in result.manifest["inputs"]:
        data = (day_dir / entry["name"]).read_bytes()
        assert entry["size_bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert by_name(result)["q_crlf.csv"]["physical_lines"] == 3
    for zone in ("curated", "quarantine"):
        folder = lake_paths(lake, DS)[zone]
        for output in result.manifest["outputs"][zone]["files"]:
            data = (folder / output["path"]).read_bytes()
            assert output["sha256"] == hashlib.sha256(data).hexdigest()
        on_disk = json.loads((folder / "_manifest.json").read_text())
        assert on_disk == json.loads(json.dumps(result.manifest))
    rows = sum(f["rows"] for f in result.manifest["outputs"]["curated"]["files"])
    assert rows == result.manifest["totals"]["rows_accepted"]


def test_no_pii_in_the_clear_anywhere(corpus_run):
    result, landing, lake = corpus_run
    planted = planted_pii(landing)
    assert len(planted) >= 150  # emails, phones and ids of every record
    paths = lake_paths(lake, DS)
    texts = [
        all_text(read_rows(paths["curated"])),
        all_text(read_rows(paths["quarantine"])),
        json.dumps(result.manifest),
    ]
    for text in texts:
        leaked = [value for value in planted if value.decode() in text]
        assert leaked == []
    quarantine = read_rows(paths["quarantine"])
    malformed = [row for row in quarantine if row["reason"] == "malformed_record"]
    assert any("[pii:email]" in row["raw_record"] for row in malformed)


def test_a_truncated_gzip_fails_the_job_naming_the_file(spark, spec, tmp_path):
    day_dir = tmp_path / "landing" / "churn" / f"ds={DS}"
    day_dir.mkdir(parents=True)
    (day_dir / "part-00000.csv").write_text(csv_text([record(1, DS)]))
    whole = gzip.compress(csv_text([record(n, DS) for n in range(2, 200)]).encode())
    (day_dir / "part-00001.csv.gz").write_bytes(whole[: len(whole) // 2])
    lake = tmp_path / "lake"
    with pytest.raises(IngestError, match=r"part-00001\.csv\.gz.*truncated gzip"):
        run_ingest(
            spark,
            spec,
            landing_uri=str(tmp_path / "landing"),
            ds=DS,
            lake_root=str(lake),
            pii_salt=TEST_SALT,
        )
    # Nothing was committed.
    assert not lake_paths(lake, DS)["curated"].exists()
    assert not lake_paths(lake, DS)["quarantine"].exists()


def test_an_unsupported_file_or_an_empty_folder_fails_loudly(spark, spec, tmp_path):
    day_dir = tmp_path / "landing" / "churn" / f"ds={DS}"
    day_dir.mkdir(parents=True)
    with pytest.raises(IngestError, match="no landing files"):
        run_ingest(
            spark,
            spec,
            landing_uri=str(day_dir),
            ds=DS,
            lake_root=str(tmp_path / "lake"),
            pii_salt=TEST_SALT,
        )
    (day_dir / "notes.xlsx").write_bytes(b"PK")
    with pytest.raises(IngestError, match=r"unsupported landing file .*notes\.xlsx"):
        run_ingest(
            spark,
            spec,
            landing_uri=str(day_dir),
            ds=DS,
            lake_root=str(tmp_path / "lake"),
            pii_salt=TEST_SALT,
        )
    with pytest.raises(IngestError, match="ds=2026-02-01, not of ds=2026-02-02"):
        run_ingest(
            spark,
            spec,
            landing_uri=str(day_dir),
            ds="2026-02-02",
            lake_root=str(tmp_path / "lake"),
            pii_salt=TEST_SALT,
        )
