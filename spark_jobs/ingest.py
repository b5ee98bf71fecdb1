"""Ingest one logical date of a dataset: landing files in, curated Parquet + quarantine + manifest out.

For ``--ds D`` the job reads every landing file of that day (CSV and JSON lines, gzipped or not),
enforces the dataset spec and writes:

- ``<lake>/curated/<dataset>/ds=D/``: the rows that passed, typed, deduplicated on the primary key
  (latest event time wins, then a stable content hash), PII treated (salted SHA-256, mask, drop);
  a spec with ``day_from: landing_folder`` reads no date from the files: the job adds the
  partition column, D, to every row;
- ``<lake>/quarantine/<dataset>/ds=D/``: every other row with its reason code(s) and its raw
  record, PII hashed and scrubbed (quarantine never holds PII in the clear either);
- ``_manifest.json`` in both: input files with sizes and SHA-256 checksums, rows read / accepted /
  quarantined by reason per file, schema drift seen, the spec's version and the output files,
  and a few example rows per quarantine reason (``quarantine_examples``: the record's key and the
  offending value, as treated for quarantine), which the quality gate's rules over ingestion and
  its report read instead of the data.

Nothing is lost: for every input file, rows read = rows accepted + rows quarantined, checked
before anything is committed. A file that cannot be read at all (a truncated gzip) fails the job,
naming it; it is never skipped. Records are parsed as strings with ``mode=PERMISSIVE`` and a
corrupt-record column (never ``DROPMALFORMED``), then cast and checked column by column, so a
bad value is quarantined under a reason naming its column (``type_mismatch:tenure_months``).
A CSV file is read line by line (a stray quote spoils only its line) unless it holds a quoted
field with a line break, then record by record (:class:`QuotedLineScanner`). A file without a
single record (header only, blank lines, an empty gzip) gives a committed day of zero rows.
The key of a line that did not parse is null (its fields cannot be trusted), and its raw text is
scrubbed of whole PII values and of one cut off at its end (``…,+1-555-37``).

Writes are atomic and idempotent: each zone is written to a staging folder, then swapped into
place (``renameat2(RENAME_EXCHANGE)`` locally; on S3 the new files go in beside the old ones under
names that carry their content hash, and the manifest, one object, is the commit point), so a run
killed half-way leaves the previous partition readable, and a re-run rewrites the same bytes (one
curated file per input split with rows in input order, quarantine sorted, Parquet footers made
canonical (:func:`canonical_parquet_footer`), content-addressed file names, no clocks or run ids
in any output), in this process or another. Readers read exactly the files a partition's manifest
names (:func:`partition_files`). Deduplication never shuffles the full data: only keys seen twice
are ranked.

Runs on Glue, EMR, EMR Serverless (argv as ``--key value`` pairs; unknown platform arguments are
ignored) and on local Spark::

    python -m spark_jobs.ingest --spec include/datasets/churn.yaml \\
        --landing-uri file:///…/lake/landing --ds 2026-01-01 --lake-root file:///…/lake \\
        --pii-salt-env HEADRACE_PII_SALT
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

from spark_jobs.dataset_spec import (
    DAY_FROM_LANDING_FOLDER,
    FORMULA_PREFIXES,
    REASON_CODES,
    ColumnSpec,
    DatasetSpec,
    load_spec,
    parse_spec,
)
from spark_jobs.spark_session import COMPILE_HUGE_METHODS

log = logging.getLogger("headrace.ingest")

MANIFEST_NAME = "_manifest.json"
MANIFEST_VERSION = 1
STAGING_DIR = "_staging"
# Hidden from Spark's partition discovery (names starting with _ or . are skipped).
TRASH_DIR = "_trash"
CORRUPT_COLUMN = "_corrupt_record"
_META_COLUMNS = ("_file", "_format", "_corrupt", "_file_reasons")
# Set for the duration of a run (and restored): measured on the 1M-row benchmark.
INGEST_SQL_CONF = {
    # Compressing the cached, validated records costs more than reading the CSV did; the cache
    # lives for one run and spills to disk when memory is short.
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
    # No adaptive query execution: the job's shuffles are small (key hashes, the few contenders,
    # the counts) and its joins are broadcasts already, so re-planning after each stage buys
    # nothing and costs planning time every run. Measured on 2 cores, runs 4-10 in one session:
    # a 2,000-row day 4.30 s -> 3.39 s (JVM CPU 6.25 -> 5.08 s); at 1M rows (bench/ingestion.py,
    # medians of 3) 18.71 s -> 18.24 s, within the noise; the Spark tests' lane 171 s -> 148 s.
    "spark.sql.adaptive.enabled": "false",
}
# Rule checking generates one very large method, and by default the JVM never JIT-compiles a
# method over 8000 bytes of bytecode: such a stage runs interpreted, several times slower than
# Spark's per-operator fallback, which this limit selects. Local Spark starts its JVM with
# -XX:-DontCompileHugeMethods (spark_session.local_conf), where the fused stage is faster still
# (1M rows: 15.2 s and 15.9 s against 17.4 s and 16.5 s, runs alternated), so there it is lifted.
HUGE_METHOD_LIMIT = {"spark.sql.codegen.hugeMethodLimit": "8000"}
RAW_PREFIX = "raw__"
TYPED_PREFIX = "t__"
LANDING_SUFFIXES = {
    ".csv": ("csv", None),
    ".csv.gz": ("csv", "gzip"),
    ".jsonl": ("jsonl", None),
    ".jsonl.gz": ("jsonl", "gzip"),
    ".json": ("jsonl", None),
    ".json.gz": ("jsonl", "gzip"),
    ".ndjson": ("jsonl", None),
    ".ndjson.gz": ("jsonl", "gzip"),
}
MIN_SALT_LENGTH = 16
# Example rows the manifest keeps per quarantine reason: enough to find the problem, small enough
# for a manifest every reader loads.
QUARANTINE_EXAMPLES_PER_REASON = 3
# univocity's default column limit: a line with more fields fails the task, not the record, so
# files with wider lines are read with a higher limit (it sizes a per-task array); past this
# bound the job refuses the file by name instead of allocating for it.
CSV_DEFAULT_MAX_COLUMNS = 20_480
MAX_CSV_FIELDS = 5_000_000

# Strings a producer should never send: invalid UTF-8 (decoded as U+FFFD), NUL and other control
# characters (tab is fine). Java regex syntax: Spark evaluates it.
BAD_CHARS_PATTERN = "[\\x00-\\x08\\x0A-\\x1F\\x7F\\uFFFD]"
_SPARK_TYPES = {
    "string": "STRING",
    "int": "INT",
    "long": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
_REASON_PRIORITY = {code: rank for rank, code in enumerate(REASON_CODES)}
# Spark's part files, and the same once named after their content (part-00003-<sha>.snappy.parquet).
_PART_FILE = re.compile(r"^(part)-(\d{5})[-.].*?(\.[a-z0-9]+)?\.parquet$")


class IngestError(RuntimeError):
    """The job cannot run or must not commit; the message names the file, column or argument."""


# --- storage: the same few verbs on local files and S3 ----------------------------------------


def to_uri(location: str) -> str:
    """A path or URI as the URI form used everywhere in the job.

    Plain paths become absolute ``file://`` URIs, and ``file://`` URIs are un-percent-encoded
    (``Path.as_uri()`` writes ``ds%3D…``): Hadoop takes a path string literally, so ``%3D``
    would name a different folder than ``=``.
    """
    if not re.match(r"^[a-z][a-z0-9+.-]*://", location):
        return file_uri(Path(location).resolve())
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return file_uri(Path(unquote(parsed.path)))
    return location.rstrip("/")


def file_uri(path: Path) -> str:
    return "file://" + str(path).rstrip("/")


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def path_key(uri: str) -> str:
    """A comparable form of a URI: Spark reports ``file:/a%20b``, we list ``file:///a b``."""
    parsed = urlparse(uri)
    return f"{parsed.scheme}://{parsed.netloc}{unquote(parsed.path)}"


class LocalFS:
    """``file://`` URIs."""

    @staticmethod
    def path(uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise IngestError(f"expected a file:// URI, got {uri!r}")
        return Path(parsed.path)

    def list_files(self, uri: str) -> list[tuple[str, int]]:
        root = self.path(uri)
        if not root.is_dir():
            return []
        return sorted((file_uri(p), p.stat().st_size) for p in root.iterdir() if p.is_file())

    def list_tree(self, uri: str) -> list[str]:
        root = self.path(uri)
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def open(self, uri: str) -> BinaryIO:
        return open(self.path(uri), "rb")

    def exists(self, uri: str) -> bool:
        return self.path(uri).exists()

    def write_bytes(self, uri: str, data: bytes) -> None:
        path = self.path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def rename(self, src: str, dst: str) -> None:
        os.replace(self.path(src), self.path(dst))

    def delete(self, uri: str) -> None:
        self.path(uri).unlink(missing_ok=True)

    def delete_tree(self, uri: str) -> None:
        shutil.rmtree(self.path(uri), ignore_errors=True)

    def swap_into_place(self, staged_uri: str, target_uri: str) -> None:
        """Make ``staged`` the new ``target`` in one step; the old one is deleted afterwards.

        ``renameat2(RENAME_EXCHANGE)`` swaps two directories atomically: a reader sees the old
        partition or the new one, never neither. Where the kernel or filesystem lacks it, the old
        one is moved aside first and moved back if the second rename fails; a run killed in that
        window leaves it under ``_trash/``, where the next run restores it from.
        """
        staged, target = self.path(staged_uri), self.path(target_uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.rename(staged, target)
            return
        if _exchange_directories(staged, target):
            shutil.rmtree(staged)
            return
        trash = target.parent / TRASH_DIR / f"{target.name}.{uuid.uuid4().hex}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(target, trash)
        try:
            os.rename(staged, target)
        except BaseException:
            os.rename(trash, target)
            raise
        shutil.rmtree(trash, ignore_errors=True)

    def recover(self, target_uri: str) -> None:
        """Put back a partition a killed fallback swap left in ``_trash/`` (newest wins)."""
        target = self.path(target_uri)
        trash = target.parent / TRASH_DIR
        if target.exists() or not trash.is_dir():
            return
        candidates = sorted(trash.glob(f"{target.name}.*"), key=lambda p: p.stat().st_mtime)
        if candidates:
            log.warning("restoring %s from an interrupted commit", target)
            os.rename(candidates[-1], target)


def _exchange_directories(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2``; False where it is unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), f"{a} <-> {b}")


class S3FS:
    """``s3://`` URIs through boto3 (present on Glue and EMR).

    S3 has no rename and no multi-object transaction: the manifest, one object, is the commit
    point (see :meth:`swap_into_place`), and readers take its file list as the partition.
    """

    def __init__(self) -> None:
        import boto3

        self.client = boto3.client("s3")

    @staticmethod
    def split(uri: str) -> tuple[str, str]:
        parsed = urlparse(uri)
        return parsed.netloc, parsed.path.lstrip("/")

    def _keys(self, uri: str) -> list[tuple[str, int]]:
        bucket, prefix = self.split(uri)
        prefix = prefix.rstrip("/") + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        return [
            (obj["Key"], obj["Size"])
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        ]

    def list_files(self, uri: str) -> list[tuple[str, int]]:
        bucket, prefix = self.split(uri)
        prefix = prefix.rstrip("/") + "/"
        return sorted(
            (f"s3://{bucket}/{key}", size)
            for key, size in self._keys(uri)
            if "/" not in key[len(prefix) :]
        )

    def list_tree(self, uri: str) -> list[str]:
        _, prefix = self.split(uri)
        prefix = prefix.rstrip("/") + "/"
        return sorted(key[len(prefix) :] for key, _ in self._keys(uri))

    def open(self, uri: str) -> BinaryIO:
        bucket, key = self.split(uri)
        return self.client.get_object(Bucket=bucket, Key=key)["Body"]

    def exists(self, uri: str) -> bool:
        bucket, key = self.split(uri)
        listing = self.client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return any(obj["Key"] == key for obj in listing.get("Contents", []))

    def write_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = self.split(uri)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def rename(self, src: str, dst: str) -> None:
        self.copy(src, dst)
        self.delete(src)

    def delete(self, uri: str) -> None:
        bucket, key = self.split(uri)
        self.client.delete_object(Bucket=bucket, Key=key)

    def delete_tree(self, uri: str) -> None:
        bucket, _ = self.split(uri)
        keys = [key for key, _ in self._keys(uri)]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})

    def copy(self, src: str, dst: str) -> None:
        src_bucket, src_key = self.split(src)
        dst_bucket, dst_key = self.split(dst)
        self.client.copy_object(
            Bucket=dst_bucket, Key=dst_key, CopySource={"Bucket": src_bucket, "Key": src_key}
        )

    def swap_into_place(self, staged_uri: str, target_uri: str) -> None:
        """Commit a staged partition so that a reader never sees a mix of two versions.

        1. Data files are copied in under their content-addressed names (see
           :func:`finalize_output_files`): they never replace a file of the current version, and
           a file already there under the same name holds the same bytes, so it is kept as is.
        2. ``_manifest.json`` is copied in: one single-object write, the commit point. Readers
           take the manifest's file list as the partition (:func:`partition_files`), so before
           this step they read the old version and after it the new one.
        3. Only then are the files the new version does not name deleted.

        A run killed before step 2 leaves unlisted files that no reader sees and the next
        commit deletes.
        """
        staged = self.list_tree(staged_uri)
        existing = set(self.list_tree(target_uri))
        for name in staged:
            if name != MANIFEST_NAME and name not in existing:
                self.copy(join_uri(staged_uri, name), join_uri(target_uri, name))
        if MANIFEST_NAME in staged:
            self.copy(join_uri(staged_uri, MANIFEST_NAME), join_uri(target_uri, MANIFEST_NAME))
        for name in sorted(existing - set(staged)):
            self.delete(join_uri(target_uri, name))
        self.delete_tree(staged_uri)

    def recover(self, target_uri: str) -> None:
        """Nothing to restore on S3: an interrupted commit is completed by re-running the job."""


def fs_for(uri: str) -> LocalFS | S3FS:
    scheme = urlparse(uri).scheme
    if scheme == "file":
        return LocalFS()
    if scheme in ("s3", "s3a"):
        return S3FS()
    raise IngestError(f"no storage for URI scheme {scheme!r} in {uri!r} (file:// or s3://)")


def read_text(uri_or_path: str) -> str:
    """A small text object (a spec) from a path, file:// or s3:// URI."""
    uri = to_uri(uri_or_path)
    with fs_for(uri).open(uri) as handle:
        return handle.read().decode("utf-8")


def load_spec_any(location: str) -> DatasetSpec:
    """The dataset spec at a path or URI (on Glue/EMR specs live in S3)."""
    if "://" not in location or location.startswith("file://"):
        return load_spec(LocalFS.path(to_uri(location)))
    return parse_spec(read_text(location), source=location)


def finalize_output_files(
    fs: LocalFS | S3FS, staged_uri: str, rows: dict[str, int] | None = None
) -> list[dict]:
    """Name each staged Parquet file after its content and describe it for the manifest.

    Spark's ``part-00003-<uuid>-c000.snappy.parquet`` becomes ``part-00003-<sha256[:16]>.snappy.parquet``
    and its bookkeeping files (``_SUCCESS``, ``.crc``) go. Names that carry the content hash never
    overwrite an older, different file on commit (S3 readers of the old manifest keep reading
    it), and a re-run of identical data writes identical names and an identical manifest.
    Returns ``[{path, size_bytes, sha256[, rows]}]``, sorted by path; ``rows`` is looked up by the
    name's ``<kind>-<NNNNN>`` stem.
    """
    entries = []
    for relative in fs.list_tree(staged_uri):
        folder, _, name = relative.rpartition("/")
        uri = join_uri(staged_uri, relative)
        if name == "_SUCCESS" or name.endswith(".crc"):
            fs.delete(uri)
            continue
        match = _PART_FILE.match(name)
        if not match:
            raise IngestError(f"unexpected file {relative!r} in staged output {staged_uri}")
        canonicalize_parquet(fs, uri)
        digest, size = _sha256_of(fs, uri)
        stem = f"{match.group(1)}-{match.group(2)}"
        extension = ".snappy.parquet" if ".snappy." in name else ".parquet"
        fixed = f"{stem}-{digest[:16]}{extension}"
        fixed_relative = f"{folder}/{fixed}" if folder else fixed
        if fixed_relative != relative:
            fs.rename(uri, join_uri(staged_uri, fixed_relative))
        entry = {"path": fixed_relative, "size_bytes": size, "sha256": digest}
        if rows is not None:
            entry["rows"] = rows.get(stem, 0)
        entries.append(entry)
    return sorted(entries, key=lambda entry: entry["path"])


# --- deterministic Parquet footers ------------------------------------------------------------
#
# parquet-mr (1.13, Spark 3.5) writes each column chunk's ``encodings`` from a HashSet of enums,
# whose iteration order follows identity hash codes: it differs from one JVM to the next, so the
# same rows written by two runs differ in a few footer bytes (measured: 42 bytes of a 104 KB file,
# all in reordered encoding lists). Sorting those lists makes the bytes a function of the data;
# the list keeps its length, so the footer is patched in place.

_THRIFT_STOP, _THRIFT_LIST, _THRIFT_SET, _THRIFT_MAP, _THRIFT_STRUCT = 0, 9, 10, 11, 12
# FileMetaData.row_groups(4)[] → RowGroup.columns(1)[] → ColumnChunk.meta_data(3) →
# ColumnMetaData.encodings(2): the lists to sort.
_ENCODINGS_PATH = (4, 1, 3, 2)


class _Thrift:
    """Just enough of Thrift's compact protocol to walk a Parquet footer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.lists: list[list[tuple[int, int]]] = []  # (start, end) of each element

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    def value(self, kind: int, path: tuple[int, ...]) -> None:
        if kind in (1, 2):  # a boolean field carries its value in its type
            return
        if kind == 3:
            self.pos += 1
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self.pos += 8
        elif kind == 8:
            length = self.varint()  # read first: it moves pos
            self.pos += length
        elif kind in (_THRIFT_LIST, _THRIFT_SET):
            header = self.data[self.pos]
            self.pos += 1
            size, element = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            items = []
            for _ in range(size):
                start = self.pos
                if element in (1, 2):
                    self.pos += 1  # booleans inside a list are one byte each
                else:
                    self.value(element, path)
                items.append((start, self.pos))
            if path == _ENCODINGS_PATH and element == 5:
                self.lists.append(items)
        elif kind == _THRIFT_MAP:
            size = self.varint()
            if size:
                types = self.data[self.pos]
                self.pos += 1
                for _ in range(size):
                    self.value(types >> 4, ())
                    self.value(types & 0x0F, ())
        elif kind == _THRIFT_STRUCT:
            self.struct(path)
        else:
            raise ValueError(f"unknown thrift type {kind} at byte {self.pos}")

    def struct(self, path: tuple[int, ...] = ()) -> None:
        field_id = 0
        while True:
            header = self.data[self.pos]
            self.pos += 1
            kind = header & 0x0F
            if kind == _THRIFT_STOP:
                return
            delta = header >> 4
            if delta:
                field_id += delta
            else:
                raw = self.varint()
                field_id = (raw >> 1) ^ -(raw & 1)
            self.value(kind, (*path, field_id))


def canonical_parquet_footer(footer: bytes) -> bytes:
    """The footer with every column chunk's ``encodings`` list in ascending order."""
    reader = _Thrift(footer)
    reader.struct()
    out = bytearray(footer)
    for items in reader.lists:
        if not items:
            continue
        chunks = []
        for start, end in items:
            raw = _Thrift(footer[start:end]).varint()
            chunks.append(((raw >> 1) ^ -(raw & 1), footer[start:end]))
        first, last = items[0][0], items[-1][1]
        out[first:last] = b"".join(chunk for _, chunk in sorted(chunks))
    return bytes(out)


def canonicalize_parquet(fs: LocalFS | S3FS, uri: str) -> None:
    """Rewrite a Parquet file's footer in canonical form (see :func:`canonical_parquet_footer`).

    A file without a Parquet footer is left as it is: it has no encoding lists to order.
    """
    if isinstance(fs, LocalFS):
        with open(fs.path(uri), "r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size < 12:
                return
            handle.seek(size - 8)
            length = _footer_length(handle.read(8), size)
            if length is None:
                return
            handle.seek(size - 8 - length)
            footer = handle.read(length)
            fixed = canonical_parquet_footer(footer)
            if fixed != footer:
                handle.seek(size - 8 - length)
                handle.write(fixed)
        return
    # S3 objects cannot be patched: the (already staged) object is read and written back.
    with fs.open(uri) as handle:
        data = handle.read()
    length = _footer_length(data[-8:], len(data))
    if length is None:
        return
    footer = data[-8 - length : -8]
    fixed = canonical_parquet_footer(footer)
    if fixed != footer:
        fs.write_bytes(uri, data[: -8 - length] + fixed + data[-8:])


def _footer_length(tail: bytes, size: int) -> int | None:
    """The footer length a Parquet file's last 8 bytes give, or None if they are not Parquet's."""
    if len(tail) != 8 or tail[4:] != b"PAR1":
        return None
    length = int.from_bytes(tail[:4], "little")
    return length if 0 < length <= size - 12 else None


def _sha256_of(fs: LocalFS | S3FS, uri: str) -> tuple[str, int]:
    with fs.open(uri) as handle:
        digest, size = hashlib.sha256(), 0
        for block in iter(lambda h=handle: h.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


# --- readers: a partition is exactly the files its manifest names ------------------------------


def read_manifest(fs: LocalFS | S3FS, partition_uri: str) -> dict:
    """The ``_manifest.json`` of a committed partition; :class:`IngestError` if there is none."""
    uri = join_uri(partition_uri, MANIFEST_NAME)
    if not fs.exists(uri):
        raise IngestError(f"{uri} does not exist: the partition was never committed")
    with fs.open(uri) as handle:
        data = handle.read()
    try:
        return json.loads(data)
    except ValueError as error:
        raise IngestError(f"{uri} is not valid JSON: {error}") from None


def listed_files(manifest: dict, partition_uri: str) -> list[str]:
    """URIs of the data files a manifest names for the partition at ``partition_uri``.

    An ingest manifest lists its zones (``outputs.curated``, ``outputs.quarantine``): the zone is
    the partition's folder two levels up (``<lake>/<zone>/<dataset>/ds=…``). A features manifest
    lists one output (``outputs.files``). Paths are joined to ``partition_uri`` as given, so a
    copied or moved lake reads the same.
    """
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict):
        raise IngestError(f"the manifest of {partition_uri} has no outputs")
    if "files" not in outputs:
        parts = partition_uri.rstrip("/").rsplit("/", 3)
        zone = parts[-3] if len(parts) == 4 else ""
        if zone not in outputs:
            raise IngestError(
                f"the manifest of {partition_uri} lists no files for zone {zone!r} "
                f"(it has {sorted(outputs)})"
            )
        outputs = outputs[zone]
    try:
        return [join_uri(partition_uri, entry["path"]) for entry in outputs["files"]]
    except (KeyError, TypeError) as error:
        raise IngestError(
            f"the manifest of {partition_uri} has a malformed file list: {error}"
        ) from None


def curated_content_digest(manifest: dict) -> str:
    """What a curated partition holds, as one SHA-256: over its files' relative paths and
    checksums, so the same rows give the same digest wherever the lake lives (the manifest's
    URIs differ between S3 and a local copy). The quality gate records it with its verdict, and
    the features job uses a verdict only for the digest it was given: a day re-ingested with
    other rows is not validated until the gate checks it again."""
    curated = (manifest.get("outputs") or {}).get("curated") or {}
    files = sorted(
        (str(entry.get("path")), str(entry.get("sha256")))
        for entry in curated.get("files") or []
        if isinstance(entry, dict)
    )
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()


def partition_files(fs: LocalFS | S3FS, partition_uri: str) -> list[str]:
    """The files to read for a committed partition: exactly those its manifest names.

    What every reader of curated, quarantine and features partitions uses, on both targets: on
    S3 a prefix can hold files of a commit in flight or of the previous version (see
    :meth:`S3FS.swap_into_place`), so listing the prefix is never the way to read it.
    """
    return listed_files(read_manifest(fs, partition_uri), partition_uri)


def staging_uri(zone_uri: str, dataset: str, partition: str, token: str) -> str:
    return join_uri(zone_uri, dataset, STAGING_DIR, partition, token)


def clear_stale_staging(fs: LocalFS | S3FS, zone_uri: str, dataset: str, partition: str) -> None:
    """Staging left by a killed run of the same partition (one run per partition at a time)."""
    fs.delete_tree(join_uri(zone_uri, dataset, STAGING_DIR, partition))


# --- the PII salt --------------------------------------------------------------------------


def resolve_pii_salt(env_name: str | None, secret_id: str | None, environ=None) -> str:
    """The salt for hashing PII: from an environment variable (local) or Secrets Manager (aws).

    The salt is never logged, never passed as a job argument and never put in a Spark plan.
    A Secrets Manager secret may hold the bare salt or a JSON object with a ``pii_salt`` key.
    """
    environ = os.environ if environ is None else environ
    if bool(env_name) == bool(secret_id):
        raise IngestError("give exactly one of --pii-salt-env NAME or --pii-salt-secret-id ARN")
    if env_name:
        salt = environ.get(env_name, "")
        where = f"environment variable {env_name}"
    else:
        import boto3

        region = secret_id.split(":")[3] if secret_id.startswith("arn:") else None
        client = boto3.client("secretsmanager", region_name=region or None)
        try:
            secret = client.get_secret_value(SecretId=secret_id)["SecretString"]
        except Exception as error:  # the message names the secret, never its value
            raise IngestError(
                f"cannot read the PII salt secret {secret_id}: {type(error).__name__}"
            ) from None
        salt = secret
        if secret.lstrip().startswith("{"):
            try:
                salt = json.loads(secret).get("pii_salt", "")
            except (ValueError, AttributeError):
                raise IngestError(
                    f"secret {secret_id} is JSON but has no string 'pii_salt' key"
                ) from None
        where = f"secret {secret_id}"
    if not isinstance(salt, str) or len(salt) < MIN_SALT_LENGTH:
        raise IngestError(
            f"the PII salt from {where} is missing or shorter than {MIN_SALT_LENGTH} characters"
        )
    return salt


# --- landing files -------------------------------------------------------------------------


@dataclass
class Layout:
    """How one file's columns map to the spec (from its CSV header or first JSON record)."""

    source_columns: list[str] = field(default_factory=list)
    mapping: dict[str, int] = field(default_factory=dict)  # spec column → position in the file
    extra_columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    renamed_columns: dict[str, str] = field(default_factory=dict)  # file name → spec name
    header_mismatch: bool = False

    def as_dict(self) -> dict:
        return {
            "columns": self.source_columns,
            "extra_columns": self.extra_columns,
            "missing_columns": self.missing_columns,
            "renamed_columns": self.renamed_columns,
            "header_mismatch": self.header_mismatch,
        }

    @property
    def drifted(self) -> bool:
        return bool(
            self.extra_columns
            or self.missing_columns
            or self.renamed_columns
            or self.header_mismatch
        )


@dataclass
class InputFile:
    uri: str
    fmt: str
    compression: str | None
    size_bytes: int = 0
    sha256: str = ""
    uncompressed_bytes: int = 0
    physical_lines: int = 0
    # Records whose quoted field spans lines (RFC 4180): the file is read record-wise, not
    # line-wise, so each is one record (see QuotedLineScanner).
    multiline_records: int = 0
    # Delimiters on the file's widest line: past the CSV parser's column limit, one such line
    # would fail the whole job (see read_landing).
    max_delimiters: int = 0
    layout: Layout = field(default_factory=Layout)

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]

    @property
    def empty(self) -> bool:
        return self.uncompressed_bytes == 0 or (
            self.fmt == "csv" and not self.layout.source_columns and not self.layout.header_mismatch
        )


def landing_file_kind(name: str) -> tuple[str, str | None] | None:
    for suffix in sorted(LANDING_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return LANDING_SUFFIXES[suffix]
    return None


def resolve_landing_dir(landing_uri: str, dataset: str, ds: str) -> str:
    """``--landing-uri`` is either the day's ``ds=`` folder or the landing root."""
    uri = to_uri(landing_uri)
    last = uri.rstrip("/").rsplit("/", 1)[-1]
    if last.startswith("ds="):
        if last != f"ds={ds}":
            raise IngestError(
                f"--landing-uri {landing_uri} is the folder of {last}, not of ds={ds}"
            )
        return uri
    return join_uri(uri, dataset, f"ds={ds}")


def discover_inputs(
    fs: LocalFS | S3FS, landing_dir: str, spec: DatasetSpec
) -> tuple[list[InputFile], list[str]]:
    """The day's landing files, and the bookkeeping files skipped (``_SUCCESS``, ``.tmp``)."""
    inputs, ignored = [], []
    for uri, size in fs.list_files(landing_dir):
        name = uri.rsplit("/", 1)[-1]
        if name.startswith(("_", ".")):
            ignored.append(name)  # producer markers and in-flight temp files, by Hadoop convention
            continue
        kind = landing_file_kind(name)
        if kind is None:
            raise IngestError(
                f"unsupported landing file {uri}: expected {', '.join(sorted(LANDING_SUFFIXES))}"
            )
        if kind[0] not in spec.formats:
            raise IngestError(
                f"landing file {uri} is {kind[0]}, which spec {spec.source} does not accept"
            )
        inputs.append(InputFile(uri=uri, fmt=kind[0], compression=kind[1], size_bytes=size))
    if not inputs:
        raise IngestError(f"no landing files for {spec.dataset} in {landing_dir}")
    return inputs, ignored


def inspect_input(fs: LocalFS | S3FS, item: InputFile, spec: DatasetSpec) -> None:
    """Checksum the file, prove it decompresses to the end, and read its header / first record.

    Done before Spark runs so an unreadable file fails the job with its name, and so the
    manifest's checksum is of exactly the bytes that were ingested.
    """
    digest = hashlib.sha256()
    head = bytearray()
    size = 0
    lines = 0
    last_byte = b"\n"
    decompressor = zlib.decompressobj(wbits=31) if item.compression == "gzip" else None
    scanner = QuotedLineScanner(spec) if item.fmt == "csv" else None
    try:
        with fs.open(item.uri) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
                data = block
                if decompressor is not None:
                    data = _gunzip_block(decompressor, block, item.uri)
                    decompressor = data[1]
                    data = data[0]
                lines += data.count(b"\n")
                if scanner is not None:
                    scanner.feed(data)
                last_byte = data[-1:] or last_byte
                item.uncompressed_bytes += len(data)
                if len(head) < 65536:
                    head.extend(data[: 65536 - len(head)])
    except (OSError, zlib.error, EOFError) as error:
        raise IngestError(f"cannot read landing file {item.uri}: {error}") from error
    if decompressor is not None and not decompressor.eof and size > 0:
        raise IngestError(
            f"cannot read landing file {item.uri}: truncated gzip (the compressed stream ends "
            f"before its end-of-stream marker after {size} bytes)"
        )
    item.size_bytes = size
    item.sha256 = digest.hexdigest()
    # A last line without a terminator is a line too.
    item.physical_lines = lines + (0 if last_byte == b"\n" else 1)
    item.layout = sniff_layout(bytes(head), item.fmt, spec)
    if scanner is not None:
        item.multiline_records = scanner.finish()
        item.max_delimiters = scanner.max_delimiters
        if item.max_delimiters > MAX_CSV_FIELDS:
            raise IngestError(
                f"landing file {item.uri} has a line of {item.max_delimiters + 1} fields, more "
                f"than the {MAX_CSV_FIELDS} the job reads; split or fix the file"
            )


class QuotedLineScanner:
    """Counts the records of a CSV file whose quoted field holds a line break.

    Spark reads a file either line-wise (splittable; a stray quote spoils only its own line) or
    record-wise (``multiLine``: one task per file, and a stray quote swallows the lines up to the
    next quote). Files are read line-wise unless this finds a real multi-line record: a line
    with an odd number of quotes, closed by a later one (within :attr:`MAX_LINES`), the lines
    between parsing as exactly one record of the header's width. Only lines holding a quote
    are looked at, so a file without quotes costs one ``bytes.find`` per block.
    """

    MAX_LINES = 100
    # A line shorter than this cannot hold more fields than the CSV parser's default limit.
    LONG_LINE = 20_000

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self.delimiter = spec.csv_delimiter.encode()
        # Delimiters on the widest line (an upper bound of its fields, minus one), and so far on
        # the line a block ended in.
        self.max_delimiters = 0
        self._line_delimiters = 0
        self.quote = spec.csv_quote.encode()
        # With another escape character a quote's parity says nothing: such files stay line-wise.
        self.enabled = bool(self.quote) and spec.csv_escape == spec.csv_quote
        self.carry = b""
        self.width: int | None = None
        self.open: list[bytes] | None = None
        self.records = 0

    def feed(self, data: bytes) -> None:
        self._track_width(data)
        if not self.enabled:
            return
        data = self.carry + data
        cut = data.rfind(b"\n") + 1
        complete, self.carry = data[:cut], data[cut:]
        pos = 0
        while pos < len(complete):
            if self.open is None and self.width is not None:
                found = complete.find(self.quote, pos)
                if found < 0:
                    return
                pos = complete.rfind(b"\n", pos, found) + 1 or pos
            end = complete.find(b"\n", pos) + 1
            self.line(complete[pos:end])
            pos = end

    def _track_width(self, data: bytes) -> None:
        parts = data.split(b"\n")
        self._line_delimiters += parts[0].count(self.delimiter)
        if len(parts) == 1:
            return
        widest = self._line_delimiters
        if max(map(len, parts)) > self.LONG_LINE:
            long_lines = (part for part in parts[1:-1] if len(part) > self.LONG_LINE)
            widest = max([widest, *(part.count(self.delimiter) for part in long_lines)])
        self.max_delimiters = max(self.max_delimiters, widest)
        self._line_delimiters = parts[-1].count(self.delimiter)

    def finish(self) -> int:
        self.max_delimiters = max(self.max_delimiters, self._line_delimiters)
        if self.enabled and self.carry:
            self.line(self.carry)
        return self.records

    def line(self, line: bytes) -> None:
        if self.width is None:
            if line.strip():
                self.width = len(self._fields(line) or [])
            return
        if self.open is None:
            if line.count(self.quote) % 2:
                self.open = [line]
            return
        self.open.append(line)
        if line.count(self.quote) % 2:
            lines, self.open = self.open, None
            fields = self._fields(b"".join(lines))
            if fields is not None and len(fields) == self.width:
                self.records += 1
                return
            # Not a record: the first line had a stray quote. Read on from the line after it.
            for rest in lines[1:]:
                self.line(rest)
        elif len(self.open) > self.MAX_LINES:
            lines, self.open = self.open, None
            for rest in lines[1:]:
                self.line(rest)

    def _fields(self, text: bytes) -> list[str] | None:
        """The fields of ``text`` if it is exactly one well-formed CSV record, else None."""
        import csv
        import io

        reader = csv.reader(
            io.StringIO(text.decode("utf-8", errors="replace").lstrip("\ufeff"), newline=""),
            delimiter=self.spec.csv_delimiter,
            quotechar=self.spec.csv_quote,
            doublequote=True,
            strict=True,
        )
        try:
            rows = [row for row in reader if row]
        except csv.Error:
            return None
        return rows[0] if len(rows) == 1 else None


def _gunzip_block(decompressor, block: bytes, uri: str):
    """Decompress one block, following concatenated gzip members (Hadoop reads them too)."""
    out = [decompressor.decompress(block)]
    while decompressor.eof and decompressor.unused_data:
        rest = decompressor.unused_data
        if not rest.startswith(b"\x1f\x8b"):
            raise IngestError(
                f"cannot read landing file {uri}: bytes after the end of the gzip stream"
            )
        decompressor = zlib.decompressobj(wbits=31)
        out.append(decompressor.decompress(rest))
    return b"".join(out), decompressor


def _first_line(head: bytes) -> str | None:
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    for line in re.split(r"\r\n|\r|\n", text):
        if line.strip():
            return line
    return None


def sniff_layout(head: bytes, fmt: str, spec: DatasetSpec) -> Layout:
    import csv

    layout = Layout()
    line = _first_line(head)
    if line is None:
        return layout
    aliases = {name.lower(): column for name, column in spec.alias_map().items()}
    if fmt == "csv":
        reader = csv.reader(
            [line], delimiter=spec.csv_delimiter, quotechar=spec.csv_quote, doublequote=True
        )
        names = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
    else:
        try:
            record = json.loads(line.lstrip("\ufeff"))
        except ValueError:
            return layout  # the record itself is quarantined as malformed; no drift to report
        names = list(record) if isinstance(record, dict) else []
    layout.source_columns = names
    for position, name in enumerate(names):
        column = aliases.get(name.lower())
        if column is None or column in layout.mapping:
            layout.extra_columns.append(name)
            continue
        layout.mapping[column] = position
        if name != column:
            layout.renamed_columns[name] = column
    layout.missing_columns = [c for c in spec.landing_column_names if c not in layout.mapping]
    layout.header_mismatch = fmt == "csv" and not layout.mapping
    return layout


# --- reading: every file group to one standard shape ------------------------------------------


def _raw(name: str):
    from pyspark.sql import functions as F

    return F.col(f"`{RAW_PREFIX}{name}`")


def read_landing(spark, spec: DatasetSpec, inputs: Sequence[InputFile]):
    """One DataFrame of every record: ``_file``, ``_format``, ``_corrupt``, ``_file_reasons`` and
    one ``raw__<column>`` string per column read from the files (null where a file lacks it)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    groups: dict[tuple, list[InputFile]] = defaultdict(list)
    for item in inputs:
        if item.empty:
            continue
        signature = (
            item.fmt,
            tuple(item.layout.source_columns),
            item.layout.header_mismatch,
            item.multiline_records > 0,
        )
        groups[signature if item.fmt == "csv" else ("jsonl",)].append(item)

    frames = []
    for signature, items in sorted(groups.items()):
        paths = [item.uri for item in items]
        layout = items[0].layout
        file_reasons: list[str] = []
        if signature[0] == "csv" and layout.header_mismatch:
            # Nothing maps: keep each whole line (no delimiter, no quoting) so it can be quarantined.
            schema = T.StructType(
                [
                    T.StructField("_line", T.StringType()),
                    T.StructField(CORRUPT_COLUMN, T.StringType()),
                ]
            )
            frame = _csv_reader(spark, spec, schema, sep="\u0001", quote="").load(paths)
            values = {name: F.lit(None).cast("string") for name in spec.landing_column_names}
            corrupt = F.coalesce(F.col(CORRUPT_COLUMN), F.col("_line"))
            file_reasons = ["header_mismatch"]
        elif signature[0] == "csv":
            fields = [
                T.StructField(f"c{i}", T.StringType()) for i in range(len(layout.source_columns))
            ]
            schema = T.StructType([*fields, T.StructField(CORRUPT_COLUMN, T.StringType())])
            frame = _csv_reader(
                spark,
                spec,
                schema,
                sep=spec.csv_delimiter,
                quote=spec.csv_quote,
                multiline=signature[3],
                max_columns=max(item.max_delimiters for item in items) + 2,
            ).load(paths)
            values = {
                name: F.col(f"c{layout.mapping[name]}")
                if name in layout.mapping
                else F.lit(None).cast("string")
                for name in spec.landing_column_names
            }
            corrupt = F.col(CORRUPT_COLUMN)
            file_reasons = [
                f"missing_column:{name}"
                for name in layout.missing_columns
                if not spec.column(name).nullable
            ]
        else:
            names = list(spec.alias_map())
            schema = T.StructType(
                [
                    *(T.StructField(n, T.StringType()) for n in names),
                    T.StructField(CORRUPT_COLUMN, T.StringType()),
                ]
            )
            frame = (
                spark.read.schema(schema)
                .option("mode", "PERMISSIVE")
                .option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
                .option("multiLine", "false")
                .json(paths)
            )
            values = {}
            for column in spec.landing_columns:
                value = F.coalesce(*(F.col(f"`{n}`") for n in (column.name, *column.aliases)))
                if column.type == "double":
                    # Spark hands a bare NaN/Infinity token to a string field with its quotes.
                    value = F.regexp_replace(value, r'^"([+-]?(NaN|Infinity))"$', "$1")
                values[column.name] = value
            corrupt = F.col(CORRUPT_COLUMN)
        frames.append(
            frame.select(
                # input_file_name() hands out the reader's own string; the _metadata struct is
                # built for every row (0.5 s against 0.2 s a million rows, measured).
                F.input_file_name().alias("_file"),
                F.lit(signature[0]).alias("_format"),
                corrupt.alias("_corrupt"),
                F.array(*(F.lit(r) for r in file_reasons))
                .cast("array<string>")
                .alias("_file_reasons"),
                *(values[name].alias(f"{RAW_PREFIX}{name}") for name in spec.landing_column_names),
            )
        )
    if not frames:
        return None
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _quiet_header_check(spark) -> None:
    """Our schemas name CSV fields by position (``c0``…), after checking the header ourselves,
    so Spark's warning that header and schema names differ is noise in every run's log."""
    try:
        jvm = spark.sparkContext._jvm
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
            "org.apache.spark.sql.catalyst.csv.CSVHeaderChecker",
            jvm.org.apache.logging.log4j.Level.ERROR,
        )
    except Exception:  # noqa: S110 - a platform without log4j2 just keeps the warning
        pass


def _csv_reader(
    spark, spec: DatasetSpec, schema, *, sep: str, quote: str, multiline=False, max_columns=0
):
    _quiet_header_check(spark)
    return (
        spark.read.format("csv")
        .schema(schema)
        .option("header", "true")
        # Positions come from our own header check; Spark must not re-check names.
        .option("enforceSchema", "true")
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
        # One physical line is one record, so a stray quote can only spoil its own line, unless
        # the file holds quoted line breaks (QuotedLineScanner): then one record is one record.
        .option("multiLine", "true" if multiline else "false")
        .option("sep", sep)
        .option("quote", quote)
        .option("escape", spec.csv_escape if quote else "\\")
        .option("encoding", "UTF-8")
        .option("maxColumns", str(max(CSV_DEFAULT_MAX_COLUMNS, max_columns)))
    )


# --- validation --------------------------------------------------------------------------


def _cast(column: ColumnSpec):
    """The typed value of a column from its normalized raw string: null when it does not parse.

    Plain (non-ANSI) casts, which return null on bad input, are several times cheaper than
    ``try_cast``; where they are lenient the guard makes them strict: an int cast would truncate
    ``12.5`` to 12, and a date cast would accept ``2026-01-01 anything``.
    """
    from pyspark.sql import functions as F

    raw = _raw(column.name)
    if column.type == "string":
        return raw
    cast = raw.cast(_SPARK_TYPES[column.type])
    # The cast strips every character up to U+0020 from both ends (NUL and other controls
    # included), so "58\x00" would read as 58: a value must start and end with a printable
    # character. A control character inside a value already makes the cast fail.
    clean_edges = (F.ascii(raw) > 32) & (F.ascii(F.substring(raw, -1, 1)) > 32)
    if column.type in ("int", "long"):
        return F.when(clean_edges & (F.instr(raw, ".") == 0), cast)
    if column.type == "date":
        shaped = (
            (F.length(raw) == 10)
            & (F.substring(raw, 5, 1) == "-")
            & (F.substring(raw, 8, 1) == "-")
        )
        return F.when(clean_edges & shaped, cast)
    return F.when(clean_edges, cast)


def _typed(column: ColumnSpec):
    """The column's typed value, once :func:`_cast` has been projected as ``t__<column>``."""
    from pyspark.sql import functions as F

    if column.type == "string":
        return _raw(column.name)
    return F.col(f"`{TYPED_PREFIX}{column.name}`")


def _bound(value: Any, column: ColumnSpec, ds: date, *, upper: bool):
    from pyspark.sql import functions as F

    if value == "$ds":
        if column.type == "timestamp":
            # "$ds" as a timestamp bound means the whole day: [ds 00:00, ds+1 00:00).
            day = ds + timedelta(days=1) if upper else ds
            return F.lit(f"{day.isoformat()} 00:00:00").cast("timestamp"), upper
        return F.lit(ds.isoformat()).cast("date"), False
    if column.type == "date":
        return F.lit(value).cast("date"), False
    if column.type == "timestamp":
        return F.lit(value).cast("timestamp"), False
    return F.lit(value), False


def _pii_detect_pattern(spec: DatasetSpec) -> str | None:
    patterns = [c.pii.detect_search for c in spec.pii_columns if c.pii]
    return "|".join(f"(?:{p})" for p in patterns) if patterns else None


def reason_checks(spec: DatasetSpec, ds: date) -> list[tuple[str, Any]]:
    """Every row rule as ``(reason label, failed condition)``, in priority order."""
    from pyspark.sql import functions as F

    checks: list[tuple[int, int, Any]] = []
    pii_pattern = _pii_detect_pattern(spec)

    def add(code: str, order: int, failed, column: str | None = None) -> None:
        label = f"{code}:{column}" if column else code
        checks.append((_REASON_PRIORITY[code], order, (label, failed)))

    for order, column in enumerate(spec.columns):
        raw = _raw(column.name)
        typed = _typed(column)
        name = column.name
        if column.type == "string":
            # Free text only: a bad byte in a column with a pattern or an allowed list already
            # fails that rule, and a regex per column per row is the costliest rule there is.
            if column.pattern is None and column.allowed is None:
                add("bad_encoding", order, raw.rlike(BAD_CHARS_PATTERN), name)
        else:
            add("type_mismatch", order, raw.isNotNull() & typed.isNull(), name)
        if column.type == "double":
            add("non_finite", order, F.isnan(typed) | (F.abs(typed) == F.lit(float("inf"))), name)
        if not column.nullable:
            add("required_null", order, raw.isNull(), name)
        for bound, upper in ((column.min, False), (column.max, True)):
            if bound is None:
                continue
            limit, exclusive = _bound(bound, column, ds, upper=upper)
            failed = typed < limit
            if upper:
                failed = typed >= limit if exclusive else typed > limit
            add("out_of_range", order, failed, name)
        if column.allowed is not None:
            add("not_allowed", order, ~typed.isin(list(column.allowed)), name)
        if column.pattern:
            add("pattern_mismatch", order, ~raw.rlike(column.pattern), name)
        if column.max_length:
            add("too_long", order, F.length(raw) > column.max_length, name)
        if column.formula_guard:
            # A first-character test rather than a regex: cheaper, and the same rule.
            add(
                "formula_injection",
                order,
                F.substring(raw, 1, 1).isin(list(FORMULA_PREFIXES)),
                name,
            )
            if pii_pattern and column.pii is None:
                add("pii_detected", order, raw.rlike(pii_pattern), name)
        if name == spec.partition_column:
            add("partition_mismatch", order, typed != F.lit(ds.isoformat()).cast("date"))
    return [check for _, _, check in sorted(checks, key=lambda item: (item[0], item[1]))]


def _normalized(spec: DatasetSpec):
    """Raw strings of the landing columns trimmed, with the spec's null tokens read as null."""
    from pyspark.sql import functions as F

    tokens = list(spec.null_tokens)
    out = []
    for name in spec.landing_column_names:
        trimmed = F.trim(_raw(name))
        out.append(
            F.when(trimmed.isin(tokens), F.lit(None))
            .otherwise(trimmed)
            .alias(f"{RAW_PREFIX}{name}")
        )
    return out


def _day_from_landing_folder(spec: DatasetSpec, ds: date) -> list:
    """The raw partition column of a spec whose day comes from the landing folder: the day
    being ingested, which is the folder's (``resolve_landing_dir`` refuses any other ``ds=``).
    Typed and checked from here on like a column read from the files."""
    from pyspark.sql import functions as F

    if spec.day_from != DAY_FROM_LANDING_FOLDER:
        return []
    return [F.lit(ds.isoformat()).alias(f"{RAW_PREFIX}{spec.partition_column}")]


def _salted_sha256(value, salt_sql: str):
    from pyspark.sql import functions as F

    return F.sha2(F.concat(F.expr(salt_sql), value), 256)


def curated_columns(spec: DatasetSpec, salt_sql: str) -> list:
    """Curated output: typed values, PII hashed / masked / dropped, in spec order."""

    out = []
    for column in spec.columns:
        if column.pii is None:
            out.append(_typed(column).alias(column.name))
            continue
        treated = _pii_treated(column, salt_sql)
        if treated is not None:
            out.append(treated.alias(column.curated_name))
    return out


def _pii_treated(column: ColumnSpec, salt_sql: str):
    from pyspark.sql import functions as F

    raw = _raw(column.name)
    pii = column.pii
    assert pii is not None
    if pii.treatment == "hash":
        return _salted_sha256(F.lower(raw) if pii.lowercase else raw, salt_sql)
    if pii.treatment == "mask":
        everything = F.regexp_replace(raw, "[A-Za-z0-9]", "*")
        if pii.keep_last == 0:
            return everything
        k = pii.keep_last
        kept = F.concat(
            F.regexp_replace(
                F.expr(
                    f"substring(`{RAW_PREFIX}{column.name}`, 1, length(`{RAW_PREFIX}{column.name}`) - {k})"
                ),
                "[A-Za-z0-9]",
                "*",
            ),
            F.expr(f"substring(`{RAW_PREFIX}{column.name}`, -{k}, {k})"),
        )
        return F.when(F.length(raw) > k, kept).otherwise(everything)
    return None


def _scrubbed(text, spec: DatasetSpec):
    """Anything PII-shaped in free text replaced by ``[pii:<column>]`` (the spec's detect regexes)."""
    from pyspark.sql import functions as F

    for column in spec.pii_columns:
        text = F.regexp_replace(text, column.pii.detect_search, f"[pii:{column.name}]")
    return text


def _scrubbed_line(text, spec: DatasetSpec):
    """A line that did not parse, scrubbed: whole PII values, then a value of a PII kind cut off
    at the end of the line (a truncated record ends in one: ``…,+1-555-37``)."""
    from pyspark.sql import functions as F

    # Control characters go first: a UTF-16 file read as UTF-8 puts a NUL between every two
    # characters, which hides every value from the detect regexes but not from a reader.
    controls = "[\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F]"
    text = _scrubbed(F.regexp_replace(text, controls, ""), spec)
    # Only the line's tail can end in a cut-off value; searching just the tail keeps a hostile
    # line of any length from costing more than that.
    tail_chars = 256
    cut = F.greatest(F.length(text) - tail_chars, F.lit(0))
    tail = text.substr(cut + 1, F.lit(tail_chars))
    for column in spec.pii_columns:
        tail = F.regexp_replace(tail, column.pii.detect_partial, f"[pii:{column.name}]")
    return F.concat(text.substr(F.lit(1), cut), tail)


def _record_json(spec: DatasetSpec, salt_sql: str, value) -> Any:
    """A record as JSON with its PII hashed, masked or dropped; ``value(column)`` gives each value.

    Nulls stay visible in the JSON: "which field was empty" is often the reason itself.
    """
    from pyspark.sql import functions as F

    members = []
    for column in spec.columns:
        if column.pii is None:
            members.append(value(column).alias(column.name))
        elif column.pii.treatment == "drop":
            members.append(
                F.when(_raw(column.name).isNotNull(), F.lit("[dropped]")).alias(column.name)
            )
        else:
            members.append(_pii_treated(column, salt_sql).alias(column.curated_name))
    return F.to_json(F.struct(*members), {"ignoreNullFields": "false"})


def invalid_record_columns(spec: DatasetSpec, salt_sql: str) -> list:
    """What quarantine keeps of a record that failed a rule, computed while its raw text is at
    hand (only for the few invalid rows): ``_q_record`` (the raw line or values, PII treated and
    scrubbed), ``_q_record_sha256`` (salted hash of the original) and ``_q_key``."""
    from pyspark.sql import functions as F

    invalid = ~F.col("_valid")
    original = F.coalesce(
        F.col("_corrupt"),
        F.to_json(
            F.struct(*(_raw(n).alias(n) for n in spec.landing_column_names)),
            {"ignoreNullFields": "false"},
        ),
    )
    redacted = F.coalesce(
        _scrubbed_line(F.col("_corrupt"), spec),
        _scrubbed(_record_json(spec, salt_sql, lambda c: _raw(c.name)), spec),
    )
    # A malformed line's fields are shifted: its "key" could be anyone's email. Keys are only
    # given for records that parsed, and scrubbed like the raw record all the same.
    parsed = F.col("_corrupt").isNull() & ~F.array_contains(
        F.col("_file_reasons"), "header_mismatch"
    )
    key = F.when(
        parsed, F.concat_ws("|", *(F.coalesce(_raw(k), F.lit("")) for k in spec.primary_key))
    )
    return [
        F.when(invalid, redacted).alias("_q_record"),
        F.when(invalid, _salted_sha256(original, salt_sql)).alias("_q_record_sha256"),
        F.when(invalid, _scrubbed(key, spec)).alias("_q_key"),
    ]


def quarantine_columns(spec: DatasetSpec, salt_sql: str) -> list:
    """Quarantine output: where the record came from, why it was refused, and the record itself
    with PII hashed, masked or dropped and anything PII-shaped scrubbed from the raw text.

    A duplicate that lost deduplication was a valid record: it is written from its typed values
    (the same record as curated holds for the winner, up to number formatting).
    """
    from pyspark.sql import functions as F

    typed_record = _record_json(spec, salt_sql, _typed)
    typed_key = F.concat_ws("|", *(_typed(spec.column(k)).cast("string") for k in spec.primary_key))
    return [
        # The file's name as the manifest lists it (Spark reports URL-encoded paths).
        F.expr("url_decode(element_at(split(_file, '/'), -1))").alias("source_file"),
        F.col("_format").alias("source_format"),
        F.col("_reason").alias("reason"),
        F.col("_reasons").alias("reasons"),
        # A valid record (a duplicate) keys by its typed key; an invalid one by the scrubbed key
        # computed while validating, which is null for a line that did not parse: its fields are
        # shifted, so a "key" taken from them could be the whole raw line, PII and all.
        F.when(F.col("_valid"), typed_key).otherwise(F.col("_q_key")).alias("record_key"),
        F.coalesce(F.col("_q_record"), _scrubbed(typed_record, spec)).alias("raw_record"),
        F.coalesce(F.col("_q_record_sha256"), _salted_sha256(typed_record, salt_sql)).alias(
            "raw_record_sha256"
        ),
    ]


def column_rules(spec: DatasetSpec, ds: date):
    """One expression per column: its first failed rule as ``'PP|CCC|label'`` (PP: the reason's
    priority, CCC: the column's position), or null when the column passes.

    One small CASE per column, each projected as its own column, keeps the generated code in
    small methods the JIT compiles; a single expression over every rule would not be.
    """
    from pyspark.sql import functions as F

    by_column: dict[int, list[tuple[int, str, Any]]] = defaultdict(list)
    positions = {name: i for i, name in enumerate(spec.column_names)}
    for label, condition in reason_checks(spec, ds):
        code, _, column = label.partition(":")
        order = positions.get(column or spec.partition_column, 0)
        by_column[order].append((_REASON_PRIORITY[code], label, condition))
    expressions = []
    for order in sorted(by_column):
        rules = sorted(by_column[order], key=lambda rule: rule[0])
        expression = None
        for priority, label, condition in rules:
            tagged = F.lit(f"{priority:02d}|{order:03d}|{label}")
            expression = (
                F.when(condition, tagged)
                if expression is None
                else expression.when(condition, tagged)
            )
        expressions.append(expression.alias(f"_rule_{order}"))
    return expressions


def validate(raw_df, spec: DatasetSpec, ds: date, salt_sql: str):
    """Every record with its reasons (``_reasons``, empty when valid, primary first), typed
    values and position. Row-local only: no shuffle."""
    from pyspark.sql import functions as F

    normalized = raw_df.select(
        *_META_COLUMNS, *_normalized(spec), *_day_from_landing_folder(spec, ds)
    )
    # Typed values are projected once and referenced by every rule (Spark does not inline a
    # projection whose expressions are used more than once, so each cast runs once per row).
    typed = normalized.select(
        "*",
        *(_cast(c).alias(f"{TYPED_PREFIX}{c.name}") for c in spec.columns if c.type != "string"),
    )
    rules = column_rules(spec, ds)
    checked = typed.select("*", *rules)
    rule_columns = [F.col(c) for c in checked.columns if c.startswith("_rule_")]
    # Only a failing row pays for the reasons array: sorted by priority, then column position.
    value_reasons = F.when(
        F.coalesce(*rule_columns).isNull(), F.array().cast("array<string>")
    ).otherwise(
        F.transform(
            F.array_sort(F.array_compact(F.array(*rule_columns))),
            lambda tagged: F.substring_index(tagged, "|", -1),
        )
    )
    header_mismatch = F.array_contains(F.col("_file_reasons"), "header_mismatch")
    corrupt_reason = F.when(
        F.col("_corrupt").rlike(BAD_CHARS_PATTERN), F.lit("bad_encoding")
    ).otherwise(F.lit("malformed_record"))
    reasons = (
        F.when(header_mismatch, F.array(F.lit("header_mismatch")))
        .when(F.col("_corrupt").isNotNull(), F.array(corrupt_reason))
        .otherwise(F.concat(F.col("_file_reasons"), value_reasons))
    )
    judged = checked.select(
        *_META_COLUMNS,
        *(f"{RAW_PREFIX}{n}" for n in spec.column_names),
        *(f"{TYPED_PREFIX}{c.name}" for c in spec.columns if c.type != "string"),
        reasons.alias("_reasons"),
        # The input split and the record's position in it: deterministic for the same files,
        # the final tiebreak of deduplication and how rows map to output files.
        F.spark_partition_id().alias("_part"),
        F.monotonically_increasing_id().alias("_row_id"),
        # 64 bits of the primary key: what finding repeated keys aggregates (cheap to group by).
        F.xxhash64(*(_typed(spec.column(k)) for k in spec.primary_key)).alias("_key_hash"),
    ).withColumn("_valid", F.size("_reasons") == 0)
    # What is kept (and cached) from here on: the raw text of non-string columns is only needed
    # by invalid rows, whose quarantine record is built now; dropping it makes the cache ~40%
    # narrower.
    return judged.select(
        "_file",
        "_format",
        *(f"{RAW_PREFIX}{c.name}" for c in spec.columns if c.type == "string"),
        *(f"{TYPED_PREFIX}{c.name}" for c in spec.columns if c.type != "string"),
        "_reasons",
        "_part",
        "_row_id",
        "_key_hash",
        "_valid",
        *invalid_record_columns(spec, salt_sql),
    )


def deduplication_losers(validated, spec: DatasetSpec):
    """``_row_id`` of every valid record that loses to another valid record of the same key.

    Only keys that occur more than once are ranked, so the full data is never shuffled: an
    aggregation over 64-bit key hashes finds them (a collision only adds a contender), and the
    few contenders are ranked by latest event time, then a hash of the whole record, then
    input position.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = [_typed(spec.column(k)).alias(f"_key_{i}") for i, k in enumerate(spec.primary_key)]
    key_names = [f"_key_{i}" for i in range(len(spec.primary_key))]
    valid = validated.filter("_valid")
    repeated = valid.groupBy("_key_hash").count().filter(F.col("count") > 1).select("_key_hash")
    # A spec without an event time (allowed when the day comes from the landing folder) has no
    # "latest" record: the hash of the record's typed values decides (the lowest wins, so the
    # same set of records keeps the same winner whatever the files' names or order), and only
    # records equal in every value, or colliding hashes, fall through to input position.
    event_time = (
        [_typed(spec.column(spec.event_time)).alias("_event_time")] if spec.event_time else []
    )
    contenders = valid.join(F.broadcast(repeated), "_key_hash", "left_semi").select(
        *keys,
        *event_time,
        F.xxhash64(*(_typed(c) for c in spec.columns)).alias("_record_hash"),
        "_row_id",
    )
    latest_first = [F.col("_event_time").desc()] if spec.event_time else []
    order = Window.partitionBy(*key_names).orderBy(*latest_first, "_record_hash", "_row_id")
    return (
        contenders.withColumn("_rank", F.row_number().over(order))
        .filter(F.col("_rank") > 1)
        .select("_row_id")
    )


def with_outcomes(validated, losers):
    """Adds ``_outcome`` (accepted | quarantined) and the primary ``_reason``."""
    from pyspark.sql import functions as F

    flagged = validated.join(
        F.broadcast(losers.withColumn("_duplicate", F.lit(True))), "_row_id", "left"
    )
    duplicate = F.coalesce(F.col("_duplicate"), F.lit(False))
    return flagged.select(
        *(c for c in validated.columns if c != "_reasons"),
        F.when(F.col("_valid") & ~duplicate, F.lit("accepted"))
        .otherwise(F.lit("quarantined"))
        .alias("_outcome"),
        F.when(duplicate, F.lit("duplicate_key"))
        .otherwise(F.element_at("_reasons", 1))
        .alias("_reason"),
        F.when(duplicate, F.array(F.lit("duplicate_key")))
        .otherwise(F.col("_reasons"))
        .alias("_reasons"),
    )


# --- the job -----------------------------------------------------------------------------


class PhaseTimer:
    """Wall-clock seconds per phase, for the log (never the manifest: it must not change)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def start(self, name: str) -> None:
        self.stop()
        self._current = (name, time.perf_counter())

    def stop(self) -> None:
        if self._current:
            name, started = self._current
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            self._current = None

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.start(name)
        try:
            yield
        finally:
            self.stop()

    def as_text(self) -> str:
        return ", ".join(f"{name}={value:.2f}" for name, value in self.seconds.items())


@dataclass
class IngestResult:
    manifest: dict
    curated_uri: str
    quarantine_uri: str
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        totals = self.manifest["totals"]
        return {
            "dataset": self.manifest["dataset"],
            "ds": self.manifest["ds"],
            "curated_uri": self.curated_uri,
            "quarantine_uri": self.quarantine_uri,
            "manifest_uri": join_uri(self.curated_uri, MANIFEST_NAME),
            **{k: totals[k] for k in ("rows_read", "rows_accepted", "rows_quarantined")},
            "quarantined_by_code": totals["quarantined_by_code"],
        }


def run_ingest(
    spark,
    spec: DatasetSpec,
    *,
    landing_uri: str,
    ds: str,
    lake_root: str,
    pii_salt: str,
) -> IngestResult:
    """Ingest one logical date; see the module docstring. Returns the committed manifest."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    logical_date = _parse_ds(ds)
    lake_root = to_uri(lake_root)
    landing_dir = resolve_landing_dir(landing_uri, spec.dataset, ds)
    partition = f"ds={ds}"
    curated_zone, quarantine_zone = (
        join_uri(lake_root, "curated"),
        join_uri(lake_root, "quarantine"),
    )
    curated_uri = join_uri(curated_zone, spec.dataset, partition)
    quarantine_uri = join_uri(quarantine_zone, spec.dataset, partition)
    lake_fs = fs_for(lake_root)
    for target in (curated_uri, quarantine_uri):
        lake_fs.recover(target)

    timer = PhaseTimer()
    landing_fs = fs_for(landing_dir)
    with timer("inspect"):
        inputs, ignored = discover_inputs(landing_fs, landing_dir, spec)
        for item in inputs:
            inspect_input(landing_fs, item, spec)
    log.info(
        "ingesting %s %s: %d files, %d bytes",
        spec.dataset,
        partition,
        len(inputs),
        sum(i.size_bytes for i in inputs),
    )

    token = uuid.uuid4().hex
    for zone in (curated_zone, quarantine_zone):
        clear_stale_staging(lake_fs, zone, spec.dataset, partition)
    curated_stage = staging_uri(curated_zone, spec.dataset, partition, token)
    quarantine_stage = staging_uri(quarantine_zone, spec.dataset, partition, token)

    # The salt reaches Spark as a one-row temp view read by a scalar subquery, never as a literal
    # in the plans of the queries that read it (they show a LocalRelation, whose rows no plan
    # prints), so plans printed in logs and errors cannot leak it. A parameterized VALUES query
    # builds the view in the JVM; createDataFrame of a Python list is a Python RDD, and reading it
    # started Spark's Python worker daemon (3 processes) in every driver: 56 CPU-s in a suite run.
    salt_view = f"headrace_pii_salt_{token}"
    spark.sql(
        "SELECT * FROM VALUES (:salt) AS salt_row(salt)", args={"salt": pii_salt}
    ).createOrReplaceTempView(salt_view)
    salt_sql = f"(SELECT salt FROM {salt_view})"  # noqa: S608 - a view name generated here
    cached: list = []
    # Cached as the JVM's objects (what DataFrame.persist() picks by default), not serialized:
    # PySpark's MEMORY_AND_DISK keeps the cached column batches Java-serialized, so each of the
    # four passes over them deserialized all of them again. Measured at 1M rows (2 cores, runs
    # alternated in one session): 15.55-17.67 s serialized against 14.26-16.49 s. Both spill to
    # disk when memory is short.
    cache_level = StorageLevel.MEMORY_AND_DISK_DESER
    final = None
    sql_conf = ingest_sql_conf(spark)
    previous_conf = {key: spark.conf.get(key, None) for key in sql_conf}
    for key, value in sql_conf.items():
        spark.conf.set(key, value)
    try:
        raw_df = read_landing(spark, spec, inputs)
        stats: dict[str, Counter] = defaultdict(Counter)
        part_rows: Counter = Counter()
        if raw_df is not None:
            with timer("validate"):
                validated = validate(raw_df, spec, logical_date, salt_sql).persist(cache_level)
                cached.append(validated)
                # The action that fills the cache also counts what the reader produced (one row
                # per record, row-local so far). Not an Observation: with adaptive execution on
                # (a platform default), when no record flows the empty stage is replaced and the
                # observed metrics never arrive, so Observation.get waited forever (a header-only
                # or blank file hung the job).
                observed_rows = validated.select(F.count(F.lit(1))).collect()[0][0]
            with timer("deduplicate"):
                losers = deduplication_losers(validated, spec).persist(cache_level)
                cached.append(losers)
                losers.count()
            with timer("count"):
                final = with_outcomes(validated, losers)
                counts = final.groupBy("_file", "_outcome", "_reason", "_part").count().collect()
            for row in counts:
                key = path_key(row["_file"])
                stats[key]["rows_read"] += row["count"]
                if row["_outcome"] == "accepted":
                    stats[key]["rows_accepted"] += row["count"]
                    part_rows[f"part-{row['_part']:05d}"] += row["count"]
                else:
                    stats[key]["rows_quarantined"] += row["count"]
                    stats[key][f"reason:{row['_reason']}"] += row["count"]
        else:
            observed_rows = 0
        manifest = build_manifest(spec, ds, landing_dir, inputs, ignored, stats, observed_rows)

        # One curated file per input split, rows in input order: both fixed by the input files.
        curated_df = (
            final.filter(F.col("_outcome") == "accepted").select(*curated_columns(spec, salt_sql))
            if final is not None
            else spark.createDataFrame([], _curated_schema(spec))
        )
        with timer("write_curated"):
            curated_df.write.mode("overwrite").parquet(curated_stage)
        quarantine_df = (
            final.filter(F.col("_outcome") == "quarantined")
            .select(*quarantine_columns(spec, salt_sql))
            # Filtered in parallel, then gathered into one sorted file (quarantine is small).
            .repartition(1)
            .sortWithinPartitions("source_file", "reason", "raw_record_sha256", "raw_record")
            if final is not None
            else spark.createDataFrame([], _quarantine_schema())
        )
        with timer("write_quarantine"):
            quarantine_df.write.mode("overwrite").parquet(quarantine_stage)
        if manifest["totals"]["rows_quarantined"]:
            with timer("quarantine_examples"):
                # Read back from the one small file just written, not recomputed from the input.
                manifest["quarantine_examples"] = quarantine_examples(
                    spark.read.parquet(quarantine_stage), spec
                )
        else:
            manifest["quarantine_examples"] = {}
    finally:
        for frame in cached:
            frame.unpersist()
        for key, value in previous_conf.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
        spark.catalog.dropTempView(salt_view)

    timer.start("commit")
    quarantine_rows = {"part-00000": manifest["totals"]["rows_quarantined"]}
    manifest["outputs"] = {
        "curated": {
            "uri": curated_uri,
            "files": finalize_output_files(lake_fs, curated_stage, part_rows),
        },
        "quarantine": {
            "uri": quarantine_uri,
            "files": finalize_output_files(lake_fs, quarantine_stage, quarantine_rows),
        },
    }
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    lake_fs.write_bytes(join_uri(quarantine_stage, MANIFEST_NAME), manifest_bytes)
    lake_fs.write_bytes(join_uri(curated_stage, MANIFEST_NAME), manifest_bytes)
    # Quarantine first: curated's manifest is the commit marker downstream stages wait on.
    commit_partition(lake_fs, quarantine_stage, quarantine_uri)
    commit_partition(lake_fs, curated_stage, curated_uri)
    for zone in (curated_zone, quarantine_zone):
        clear_stale_staging(lake_fs, zone, spec.dataset, partition)
    timer.stop()
    log.info("phase seconds: %s", timer.as_text())
    return IngestResult(
        manifest=manifest,
        curated_uri=curated_uri,
        quarantine_uri=quarantine_uri,
        timings=dict(timer.seconds),
    )


def quarantine_examples(
    quarantine_df, spec: DatasetSpec, per_reason: int = QUARANTINE_EXAMPLES_PER_REASON
) -> dict[str, list[dict]]:
    """A few quarantined rows per primary reason: ``{reason: [{source_file, record_key, value}]}``.

    ``value`` is the value of the column the reason names, taken from the quarantine record (so
    PII is hashed, masked or dropped exactly as there); ``None`` for a reason without a column
    (a malformed line, a duplicate) or a line that did not parse. The first rows in a fixed
    order (file, key, record hash) are chosen, so a re-run writes the same manifest.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("reason").orderBy(
        F.col("source_file").asc_nulls_first(),
        F.col("record_key").asc_nulls_first(),
        F.col("raw_record_sha256").asc_nulls_first(),
    )
    rows = (
        quarantine_df.withColumn("_n", F.row_number().over(order))
        .filter(F.col("_n") <= per_reason)
        .select("reason", "_n", "source_file", "record_key", "raw_record")
        .collect()
    )
    # The quarantine record names a PII column by its curated name (email -> email_sha256).
    record_names = {c.name: c.curated_name or c.name for c in spec.columns}
    examples: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["reason"], r["_n"])):
        code, _, column = row["reason"].partition(":")
        if code == "partition_mismatch":
            column = spec.partition_column
        examples.setdefault(row["reason"], []).append(
            {
                "source_file": row["source_file"],
                "record_key": row["record_key"],
                "value": _record_value(row["raw_record"], record_names.get(column)),
            }
        )
    return examples


def _record_value(raw_record: str | None, name: str | None) -> Any:
    """The field ``name`` of a quarantine record's JSON; ``None`` for a raw line or no name."""
    if not raw_record or not name:
        return None
    try:
        record = json.loads(raw_record)
    except ValueError:
        return None  # a line that did not parse is kept as text: no field to point at
    return record.get(name) if isinstance(record, dict) else None


def ingest_sql_conf(spark) -> dict[str, str]:
    """The SQL options a run sets (and restores): :data:`INGEST_SQL_CONF`, plus the huge-method
    limit unless the tasks run in this very JVM (local Spark) and it compiles huge methods."""
    conf = dict(INGEST_SQL_CONF)
    if not _tasks_compile_huge_methods(spark):
        conf.update(HUGE_METHOD_LIMIT)
    return conf


def _tasks_compile_huge_methods(spark) -> bool:
    context = spark.sparkContext
    if not context.master.startswith("local"):
        return False  # executors are other JVMs, started by the platform with its own flags
    try:
        runtime = context._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
        return COMPILE_HUGE_METHODS in list(runtime.getInputArguments())
    except Exception:  # no py4j view of the JVM: assume the default JVM
        return False


def commit_partition(fs: LocalFS | S3FS, staged_uri: str, target_uri: str) -> None:
    """Swap a fully written staging folder into place (see :meth:`LocalFS.swap_into_place`)."""
    fs.swap_into_place(staged_uri, target_uri)


def _curated_schema(spec: DatasetSpec):
    from pyspark.sql import types as T

    spark_types = {
        "string": T.StringType(),
        "int": T.IntegerType(),
        "long": T.LongType(),
        "double": T.DoubleType(),
        "boolean": T.BooleanType(),
        "date": T.DateType(),
        "timestamp": T.TimestampType(),
    }
    return T.StructType(
        [T.StructField(name, spark_types[ctype]) for name, ctype in spec.curated_columns()]
    )


def _quarantine_schema():
    return (
        "source_file string, source_format string, reason string, reasons array<string>, "
        "record_key string, raw_record string, raw_record_sha256 string"
    )


def build_manifest(
    spec: DatasetSpec,
    ds: str,
    landing_dir: str,
    inputs: Sequence[InputFile],
    ignored: Sequence[str],
    stats: dict[str, Counter],
    observed_rows: int,
) -> dict:
    """The run manifest (deterministic: no clocks, no run ids), after checking the row invariant."""
    files = []
    totals: Counter = Counter()
    by_reason: Counter = Counter()
    known = {path_key(item.uri) for item in inputs}
    unknown = sorted(set(stats) - known)
    if unknown:
        raise IngestError(f"rows came from files that were not inspected: {unknown}")
    for item in inputs:
        counts = stats.get(path_key(item.uri), Counter())
        reasons = {
            k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("reason:")
        }
        entry = {
            "uri": item.uri,
            "name": item.name,
            "format": item.fmt,
            "compression": item.compression,
            "size_bytes": item.size_bytes,
            "sha256": item.sha256,
            "uncompressed_bytes": item.uncompressed_bytes,
            "physical_lines": item.physical_lines,
            "multiline_records": item.multiline_records,
            "layout": item.layout.as_dict(),
            "rows_read": counts["rows_read"],
            "rows_accepted": counts["rows_accepted"],
            "rows_quarantined": counts["rows_quarantined"],
            "quarantined_by_reason": reasons,
        }
        if entry["rows_read"] != entry["rows_accepted"] + entry["rows_quarantined"]:
            raise IngestError(
                f"{item.uri}: {entry['rows_read']} rows read but {entry['rows_accepted']} accepted + "
                f"{entry['rows_quarantined']} quarantined; refusing to commit"
            )
        files.append(entry)
        for key in ("rows_read", "rows_accepted", "rows_quarantined"):
            totals[key] += entry[key]
        by_reason.update(reasons)
    if totals["rows_read"] != observed_rows:
        raise IngestError(
            f"the reader produced {observed_rows} records but {totals['rows_read']} were accounted "
            "for; refusing to commit"
        )
    by_code: Counter = Counter()
    for reason, count in by_reason.items():
        by_code[reason.split(":", 1)[0]] += count
    return {
        "manifest_version": MANIFEST_VERSION,
        "job": "spark_jobs.ingest",
        "dataset": spec.dataset,
        "ds": ds,
        "schema_version": spec.schema_version,
        "spec_fingerprint": spec.fingerprint,
        "landing_uri": landing_dir,
        "inputs": files,
        "ignored_files": sorted(ignored),
        "schema_drift": [
            {"file": item.name, **item.layout.as_dict()} for item in inputs if item.layout.drifted
        ],
        "totals": {
            "files": len(inputs),
            "rows_read": totals["rows_read"],
            "rows_accepted": totals["rows_accepted"],
            "rows_quarantined": totals["rows_quarantined"],
            "quarantined_by_reason": dict(sorted(by_reason.items())),
            "quarantined_by_code": dict(sorted(by_code.items())),
        },
    }


def _parse_ds(ds: str) -> date:
    try:
        return date.fromisoformat(ds)
    except ValueError:
        raise IngestError(f"--ds {ds!r} is not a date (YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    # Every option takes a value: Glue passes job arguments only as --key value pairs.
    parser = argparse.ArgumentParser(
        prog="python -m spark_jobs.ingest", description="Ingest one logical date of a dataset."
    )
    parser.add_argument(
        "--spec", required=True, help="dataset spec YAML: path, file:// or s3:// URI"
    )
    parser.add_argument(
        "--landing-uri", required=True, help="landing root (…/landing) or the day's ds= folder"
    )
    parser.add_argument("--ds", required=True, help="logical date, YYYY-MM-DD")
    parser.add_argument(
        "--lake-root", required=True, help="lake root URI: file:///… or s3://bucket/prefix"
    )
    parser.add_argument("--pii-salt-env", help="environment variable holding the PII salt (local)")
    parser.add_argument(
        "--pii-salt-secret-id", help="Secrets Manager secret ARN of the PII salt (aws)"
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        # Glue adds its own (--JOB_ID, --TempDir, …); they are not ours to refuse.
        log.info(
            "ignoring platform arguments: %s", " ".join(a for a in unknown if a.startswith("--"))
        )
    return args


def configure_logging() -> None:
    """Counts and phases to stderr (never values: records may hold PII)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    # py4j narrates every gateway connection at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 and prints the run summary (counts only) as JSON on success."""
    configure_logging()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        spec = load_spec_any(args.spec)
        salt = resolve_pii_salt(args.pii_salt_env, args.pii_salt_secret_id)
        _parse_ds(args.ds)
        from spark_jobs.spark_session import get_spark

        spark = get_spark(f"headrace-ingest-{spec.dataset}")
        result = run_ingest(
            spark,
            spec,
            landing_uri=args.landing_uri,
            ds=args.ds,
            lake_root=args.lake_root,
            pii_salt=salt,
        )
    except IngestError as error:
        log.error("ingest failed: %s", error)
        raise
    summary = result.summary()
    log.info(
        "ingested %s ds=%s: %d read, %d accepted, %d quarantined",
        summary["dataset"],
        summary["ds"],
        summary["rows_read"],
        summary["rows_accepted"],
        summary["rows_quarantined"],
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
