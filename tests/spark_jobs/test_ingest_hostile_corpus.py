"""The ingest job against landing files nobody here wrote: one file per hostile kind, exact counts.

Each kind is a file of its own in one landing day (distinct customers per file, so no file's
outcome depends on another's). For every file: records in the file = rows read = accepted +
quarantined, with the quarantined rows by reason code exactly as listed. Also: a day whose only
file holds no record finishes with a zero-row manifest (it used to hang the job), and no zone
holds a PII value planted in a malformed line, whole or cut off.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from lake_helpers import (
    COLUMNS,
    TEST_SALT,
    csv_line,
    csv_text,
    json_line,
    lake_paths,
    read_rows,
    record,
)

from spark_jobs.ingest import run_ingest

pytestmark = pytest.mark.e2e

DS = "2026-03-01"
HEADER = ",".join(COLUMNS)

# Planted in malformed lines (never in a field that parses into a PII column): none of these may
# appear in any file of any zone. The cut-off ones are what a truncated line ends in.
LEAK_EMAIL = "leaky.lena@example.org"
LEAK_PHONE = "+1-555-867-5309"
LEAK_ID = "923-45-6789"
CUT_PHONE = "+1-555-37"
CUT_ID = "934-56-7"
CUT_EMAIL = "cut.carla@exa"
PLANTED = (LEAK_EMAIL, LEAK_PHONE, LEAK_ID, CUT_PHONE, CUT_ID, CUT_EMAIL)

# file → (records in the file, accepted, {reason: quarantined rows}).
EXPECTED: dict[str, tuple[int, int, dict[str, int]]] = {
    "k01_header_only.csv": (0, 0, {}),
    "k02_blank_lines.jsonl": (0, 0, {}),
    "k03_whitespace_only.csv": (0, 0, {}),
    "k04_empty.csv.gz": (0, 0, {}),
    "k05_unbalanced_quote.csv": (3, 2, {"malformed_record": 1}),
    "k06_multiline_quoted.csv": (3, 2, {"bad_encoding:device_model": 1}),
    "k07_latin1.csv": (2, 1, {"bad_encoding:device_model": 1}),
    "k08_mixed_encodings.csv": (3, 1, {"bad_encoding:device_model": 2}),
    "k09_crlf_lf_mix.csv": (3, 3, {}),
    "k10_bom_in_gzip.csv.gz": (2, 2, {}),
    "k11_very_wide_row.csv": (2, 1, {"malformed_record": 1}),
    "k12_duplicate_headers.csv": (2, 2, {}),
    "k13_header_trailing_delimiter.csv": (2, 2, {}),
    "k14_nul_in_number.csv": (
        5,
        1,
        {
            "type_mismatch:tenure_months": 3,
            "type_mismatch:monthly_charge": 1,
        },
    ),
    "k15_truncated_lines.csv": (3, 1, {"malformed_record": 2}),
    "k16_truncated.jsonl": (2, 1, {"malformed_record": 1}),
    "k17_control_chars.csv": (3, 1, {"bad_encoding:device_model": 2}),
    # Spark reads a top-level JSON array as its elements: the one object in it is a record.
    "k18_json_not_objects.jsonl": (4, 2, {"malformed_record": 2}),
    "k19_json_nested_value.jsonl": (2, 1, {"not_allowed:plan": 1}),
    "k20_very_long_value.csv": (2, 1, {"too_long:device_model": 1}),
    "k21_no_final_newline.csv": (2, 2, {}),
    "k22_cr_only.csv": (2, 2, {}),
    "k23_utf16.csv": (3, 0, {"header_mismatch": 3}),
    "k24_gzip_members.csv.gz": (2, 2, {}),
    "k25_delimiters_only.csv": (2, 0, {"required_null:customer_id": 2}),
    "k26_header_case_and_spaces.csv": (1, 1, {}),
    "k27_pii_in_key.csv": (2, 1, {"pattern_mismatch:customer_id": 1}),
    # Known limit: a file holding a real multi-line record is read record-wise, and there a
    # stray quote runs on to the next quote: the two lines it spans become one line-level
    # record (bad_encoding: it holds a line break) and the rest of the multi-line record one
    # malformed fragment. Still 3 rows for 3 records, none lost.
    "k28_multiline_and_stray_quote.csv": (3, 1, {"bad_encoding": 1, "malformed_record": 1}),
    "k29_blank_lines_between.jsonl": (2, 2, {}),
    "k30_quoted_formula.csv": (2, 1, {"formula_injection:device_model": 1}),
}


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def hostile_files() -> dict[str, bytes]:
    """The corpus: customer numbers 100 + 10·k … for kind k, so no two files share a key."""

    def r(k: int, i: int = 0, **kw):
        return record(100 + 10 * k + i, DS, **kw)

    def csv_of(*records, newline="\n") -> bytes:
        return csv_text(list(records), newline=newline).encode()

    files: dict[str, bytes] = {}
    files["k01_header_only.csv"] = (HEADER + "\n").encode()
    files["k02_blank_lines.jsonl"] = b"\n\n\n\n"
    files["k03_whitespace_only.csv"] = b"   \n\t\n  \n"
    files["k04_empty.csv.gz"] = _gzip(b"")
    # An opening quote that never closes (what the generator plants), PII on the same line.
    stray = csv_line(r(5, 1, email=LEAK_EMAIL, phone=LEAK_PHONE, national_id=LEAK_ID))
    stray = stray.replace(",standard,", ',"standard,', 1)
    files["k05_unbalanced_quote.csv"] = (
        f"{HEADER}\n{csv_line(r(5))}\n{stray}\n{csv_line(r(5, 2))}\n"
    ).encode()
    # RFC 4180: a quoted field holding a line break is one record (its newline is a control
    # character in free text, so that record is quarantined, as one record).
    files["k06_multiline_quoted.csv"] = csv_of(r(6), r(6, 1, device_model="Pixel\n8 Pro"), r(6, 2))
    files["k07_latin1.csv"] = csv_text([r(7, device_model="Café TV"), r(7, 1)]).encode("latin-1")
    files["k08_mixed_encodings.csv"] = (
        csv_line(dict(zip(COLUMNS, COLUMNS, strict=True))).encode()
        + b"\n"
        + csv_line(r(8, device_model="Caf\u00e9 UTF8")).encode()
        + b"\n"
        + csv_line(r(8, 1, device_model="Caf\u00e9 latin")).encode("latin-1")
        + b"\n"
        + csv_line(r(8, 2, device_model="\u201csmart\u201d")).encode("cp1252")
        + b"\n"
    )
    files["k09_crlf_lf_mix.csv"] = (
        f"{HEADER}\r\n{csv_line(r(9))}\n{csv_line(r(9, 1))}\r\n{csv_line(r(9, 2))}\n"
    ).encode()
    files["k10_bom_in_gzip.csv.gz"] = _gzip(b"\xef\xbb\xbf" + csv_of(r(10), r(10, 1)))
    # 30,000 fields: more than the CSV parser's default column limit (20,480).
    wide = csv_line(r(11, 1)) + "," * 30_000
    files["k11_very_wide_row.csv"] = f"{HEADER}\n{csv_line(r(11))}\n{wide}\n".encode()
    # A column named twice: the first is read, the second is an extra column.
    files["k12_duplicate_headers.csv"] = (
        f"{HEADER},plan\n{csv_line(r(12))},premium\n{csv_line(r(12, 1))},basic\n"
    ).encode()
    files["k13_header_trailing_delimiter.csv"] = (
        f"{HEADER},\n{csv_line(r(13))},\n{csv_line(r(13, 1))},\n"
    ).encode()
    files["k14_nul_in_number.csv"] = csv_of(
        r(14, tenure_months="58\x00"),
        r(14, 1, tenure_months="\x0058"),
        r(14, 2, tenure_months="5\x008"),
        r(14, 3, monthly_charge="39.99\x00"),
        r(14, 4),
    )
    # Lines cut short, the cut inside a PII value (what a truncated producer write leaves).
    cut_phone = csv_line(r(15, 1, phone=LEAK_PHONE))
    cut_phone = cut_phone[: cut_phone.index(LEAK_PHONE) + len(CUT_PHONE)]
    cut_id = csv_line(r(15, 2, national_id="934-56-7890"))
    cut_id = cut_id[: cut_id.index("934-56-") + len(CUT_ID)]
    files["k15_truncated_lines.csv"] = (
        f"{HEADER}\n{csv_line(r(15))}\n{cut_phone}\n{cut_id}\n".encode()
    )
    cut_json = json_line(r(16, 1, email="cut.carla@example.com"))
    cut_json = cut_json[: cut_json.index(CUT_EMAIL) + len(CUT_EMAIL)]
    files["k16_truncated.jsonl"] = f"{json_line(r(16))}\n{cut_json}\n".encode()
    files["k17_control_chars.csv"] = csv_of(
        r(17, device_model="bell\x07"), r(17, 1, device_model="esc\x1b[31m"), r(17, 2)
    )
    files["k18_json_not_objects.jsonl"] = (
        f'{json_line(r(18))}\n[{json_line(r(18, 1))}]\n42\n"just a string"\n'
    ).encode()
    nested = json_line(r(19, 1)).replace('"plan": "standard"', '"plan": {"tier": "standard"}')
    files["k19_json_nested_value.jsonl"] = f"{json_line(r(19))}\n{nested}\n".encode()
    files["k20_very_long_value.csv"] = csv_of(r(20, device_model="x" * 200_000), r(20, 1))
    files["k21_no_final_newline.csv"] = csv_of(r(21), r(21, 1)).rstrip(b"\n")
    files["k22_cr_only.csv"] = csv_of(r(22), r(22, 1), newline="\r")
    files["k23_utf16.csv"] = csv_text(
        [r(23, email=LEAK_EMAIL), r(23, 1, phone=LEAK_PHONE), r(23, 2, national_id=LEAK_ID)]
    ).encode("utf-16")
    files["k24_gzip_members.csv.gz"] = _gzip(csv_of(r(24))) + _gzip(
        (csv_line(r(24, 1)) + "\n").encode()
    )
    files["k25_delimiters_only.csv"] = (HEADER + "\n" + "," * 21 + "\n" + "," * 21 + "\n").encode()
    spaced = ",".join(f" {c.upper()} " if c == "customer_id" else c for c in COLUMNS)
    files["k26_header_case_and_spaces.csv"] = f"{spaced}\n{csv_line(r(26))}\n".encode()
    files["k27_pii_in_key.csv"] = csv_of(r(27, customer_id=LEAK_EMAIL), r(27, 1))
    # A real multi-line record and a stray quote in one file (see EXPECTED: a known limit).
    stray28 = csv_line(r(28, 1)).replace(",standard,", ',"standard,', 1)
    files["k28_multiline_and_stray_quote.csv"] = (
        f"{HEADER}\n{csv_line(r(28))}\n{stray28}\n"
        f"{csv_line(r(28, 2, device_model='two' + chr(10) + 'lines'))}\n"
    ).encode()
    files["k29_blank_lines_between.jsonl"] = (
        f"\n{json_line(r(29))}\n\n   \n{json_line(r(29, 1))}\n\n"
    ).encode()
    files["k30_quoted_formula.csv"] = csv_of(
        r(30, device_model='=HYPERLINK("http://x.example/?a,b","open")'), r(30, 1)
    )
    return files


def write_day(day_dir: Path, files: dict[str, bytes]) -> None:
    day_dir.mkdir(parents=True)
    for name, data in files.items():
        (day_dir / name).write_bytes(data)


def ingest_day(spark, spec, root: Path, files: dict[str, bytes]):
    landing = root / "landing"
    write_day(landing / "churn" / f"ds={DS}", files)
    lake = root / "lake"
    result = run_ingest(
        spark, spec, landing_uri=str(landing), ds=DS, lake_root=lake.as_uri(), pii_salt=TEST_SALT
    )
    return result, lake


@pytest.fixture(scope="module")
def hostile_run(spark, spec, tmp_path_factory):
    return ingest_day(spark, spec, tmp_path_factory.mktemp("hostile"), hostile_files())


def test_the_corpus_has_every_kind_the_issue_names():
    assert len(EXPECTED) >= 25
    assert sorted(hostile_files()) == sorted(EXPECTED)


def test_every_hostile_file_is_counted_exactly(hostile_run):
    result, _ = hostile_run
    inputs = {entry["name"]: entry for entry in result.manifest["inputs"]}
    assert sorted(inputs) == sorted(EXPECTED)
    got = {
        name: (entry["rows_read"], entry["rows_accepted"], entry["quarantined_by_reason"])
        for name, entry in inputs.items()
    }
    assert got == EXPECTED
    totals = result.manifest["totals"]
    assert totals["rows_read"] == sum(e[0] for e in EXPECTED.values())
    assert totals["rows_accepted"] == sum(e[1] for e in EXPECTED.values())
    assert inputs["k06_multiline_quoted.csv"]["multiline_records"] == 1
    assert inputs["k05_unbalanced_quote.csv"]["multiline_records"] == 0


def test_outputs_match_the_manifest_row_for_row(hostile_run):
    result, lake = hostile_run
    paths = lake_paths(lake, DS)
    curated, quarantine = read_rows(paths["curated"]), read_rows(paths["quarantine"])
    assert len(curated) == result.manifest["totals"]["rows_accepted"]
    assert len(quarantine) == result.manifest["totals"]["rows_quarantined"]
    by_file: dict[str, dict[str, int]] = {}
    for row in quarantine:
        reasons = by_file.setdefault(row["source_file"], {})
        reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
    assert by_file == {name: e[2] for name, e in EXPECTED.items() if e[2]}
    rows = {row["customer_id"]: row for row in curated}
    # Read clean: CRLF/LF mixes, a BOM inside gzip, CR-only lines, concatenated gzip members,
    # a padded upper-case header, the first of two same-named columns.
    assert [rows[f"C9000001{n}"]["churned"] for n in (90, 91, 92)] == [0, 0, 0]
    assert rows["C900000200"]["customer_id"] == "C900000200"
    assert rows["C900000321"]["tenure_months"] == 58
    assert rows["C900000341"]["plan"] == "standard"
    assert rows["C900000360"]["customer_id"] == "C900000360"
    assert rows["C900000220"]["plan"] == rows["C900000221"]["plan"] == "standard"
    # A NUL anywhere in a number refuses the record: only k14's clean record is accepted.
    assert sorted(k for k in rows if k.startswith("C90000024")) == ["C900000244"]
    assert rows["C900000244"]["tenure_months"] == 58


def test_the_key_of_an_unparseable_line_is_never_its_text(hostile_run):
    _, lake = hostile_run
    quarantine = read_rows(lake_paths(lake, DS)["quarantine"])
    line_level = {"malformed_record", "header_mismatch", "bad_encoding"}
    for row in quarantine:
        if row["reason"] in line_level or row["source_file"] == "k23_utf16.csv":
            assert row["record_key"] is None, row
        else:
            assert row["record_key"] is None or len(row["record_key"]) < 40, row
    keyed = {row["record_key"] for row in quarantine if row["source_file"] == "k27_pii_in_key.csv"}
    assert keyed == {f"[pii:email]|{DS}"}


def _zone_texts(lake: Path) -> dict[str, bytes]:
    """Every file under the lake: its bytes, and for Parquet its decoded rows too."""
    texts = {}
    for path in sorted(p for p in lake.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".parquet":
            rows = pq.ParquetFile(path).read().to_pylist()
            data += json.dumps(rows, default=str, ensure_ascii=False).encode()
        texts[str(path.relative_to(lake))] = data
    return texts


def test_no_zone_holds_a_planted_pii_value(hostile_run):
    _, lake = hostile_run
    texts = _zone_texts(lake)
    zones = {name.split("/")[0] for name in texts}
    assert zones == {"curated", "quarantine"}
    assert any(name.endswith("_manifest.json") for name in texts)
    leaks = {
        name: [value for value in PLANTED if value.encode() in data] for name, data in texts.items()
    }
    assert {name: found for name, found in leaks.items() if found} == {}
    # The bytes of the UTF-16 file: every planted value once more, NUL-interleaved.
    for name, data in texts.items():
        for value in PLANTED:
            assert value.encode("utf-16-le") not in data, (name, value)
    quarantine = read_rows(lake_paths(lake, DS)["quarantine"])
    scrubbed = "\n".join(row["raw_record"] for row in quarantine)
    assert "[pii:phone]" in scrubbed and "[pii:national_id]" in scrubbed
    # The truncated lines end in a marker where the cut-off phone, id and email were.
    cut = [r["raw_record"] for r in quarantine if r["source_file"].startswith(("k15", "k16"))]
    assert len(cut) == 3
    assert all(re.search(r"\[pii:\w+\]$", text) for text in cut), cut


RECORDLESS = {
    "header_only.csv": (HEADER + "\n").encode(),
    "blank_lines.jsonl": b"\n\n\n",
    "whitespace_only.csv": b"  \n \t \n",
    "empty.csv.gz": _gzip(b""),
    "blank_lines_header_only.csv.gz": _gzip(("\n" + HEADER + "\r\n\r\n").encode()),
}


@pytest.mark.parametrize("name", sorted(RECORDLESS))
def test_a_day_without_records_commits_a_zero_row_manifest(spark, spec, tmp_path, name):
    # The job used to wait forever here (Observation.get with no row flowing); the test
    # session's own timeout would be what ended it, so finishing is the first assertion.
    result, lake = ingest_day(spark, spec, tmp_path, {name: RECORDLESS[name]})
    on_disk = json.loads((lake_paths(lake, DS)["curated"] / "_manifest.json").read_text())
    assert on_disk["totals"] == {
        "files": 1,
        "rows_read": 0,
        "rows_accepted": 0,
        "rows_quarantined": 0,
        "quarantined_by_reason": {},
        "quarantined_by_code": {},
    }
    assert [entry["name"] for entry in on_disk["inputs"]] == [name]
    for zone in ("curated", "quarantine"):
        assert read_rows(lake_paths(lake, DS)[zone]) == []
    assert on_disk == json.loads(json.dumps(result.manifest))
