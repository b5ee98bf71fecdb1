"""Run a SageMaker CreateTransformJob body on this machine, streaming, with bounded memory.

The local counterpart of SageMaker batch transform: :func:`run_transform_job` takes the very
CreateTransformJob body :func:`include.sagemaker_requests.build_transform_job_request` builds for
AWS, and the CreateModel body of its model, and honours them as SageMaker does:

- every file under ``TransformInput.DataSource.S3DataSource.S3Uri`` (``Gzip`` decompressed) is
  split into lines (``SplitType=Line``) and sent in mini-batches of at most ``MaxPayloadInMB``
  (``BatchStrategy=MultiRecord``; one line per request for ``SingleRecord``);
- each mini-batch goes through ``DataProcessing``'s ``InputFilter``, then the model's own
  handlers — ``input_fn`` → ``predict_fn`` → ``output_fn`` of the ``code/inference.py`` packed in
  the model's ``model.tar.gz``, the code the SageMaker PyTorch container runs (never the
  repository's current ``training/``) — then ``JoinSource=Input`` and ``OutputFilter``;
- the output lines go to ``<S3OutputPath>/<input file's path under the prefix>.out``, one line
  per record (``AssembleWith=Line``), written aside and renamed when the file is complete.

Only one mini-batch is in memory at a time, so memory stays flat however large the input is;
``max_records`` caps the records of a mini-batch below what the payload size allows (a local
knob: SageMaker has none).

A job runs under the one local supervisor (:mod:`include.local_jobs`), in a session of its own
(the Airflow worker stays responsive and ``on_kill`` can stop it), its state in
``<work_root>/transform-jobs/<name>/``. A retried task asking for the same job name waits on the
running job or returns the completed one instead of scoring twice; a failed or stopped job
starts afresh.

JSONPath filters: the subset SageMaker documents for batch transform that CSV rows and JSON
objects need — ``$``, ``$[i:j]``, ``$[i,j,-1]`` (CSV columns), ``$.key`` and ``$['a','b']``
(JSON keys).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json
import logging
import operator
import os
import re
import sys
import tarfile
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from itertools import accumulate
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from include import local_jobs
from include.local_envs import training_python
from include.local_state import read_json

log = logging.getLogger("headrace.local_transform")

# SageMaker's TransformJobStatus values: the local supervisor's.
COMPLETED = local_jobs.COMPLETED
OUTPUT_SUFFIX = ".out"
MB = 1024 * 1024
# The scoring operator's default cap on a local mini-batch. A 6 MB mini-batch of churn lines
# (about 45,000 records) takes some 350 MB of Python objects in the handlers; at 5,000 records
# scoring 1M rows peaked 38 MB above torch and the model, and ran faster (bench/scoring.py).
DEFAULT_MAX_RECORDS = 5_000
DEFAULT_STOP_GRACE_S = 15.0
_READ_BLOCK = MB  # a few MB of lines in flight beside the mini-batch, whatever the file size


class TransformError(RuntimeError):
    """A transform cannot go on; the message names the input file and line, or the setting."""


# --- JSONPath filters --------------------------------------------------------------------------

_SLICE = re.compile(r"^\$\[(-?\d*):(-?\d*)\]$")
_INDICES = re.compile(r"^\$\[(-?\d+(?:,\s*-?\d+)*)\]$")
_KEY = re.compile(r"^\$\.([A-Za-z_][\w-]*)$")
_KEYS = re.compile(r"^\$\[('[^']*'(?:,\s*'[^']*')*)\]$")


def compile_filter(expression: str | None, what: str) -> Callable[[list], list] | None:
    """A function applying one ``DataProcessing`` filter to a mini-batch of records (CSV rows as
    lists of fields, or JSON objects), or ``None`` for ``$`` (whole records)."""
    expression = (expression or "$").strip()
    if expression == "$":
        return None
    if match := _SLICE.match(expression):
        start, stop = (int(v) if v else None for v in match.groups())

        def take_slice(records: list) -> list:
            _check_rows(records, expression)
            return [record[start:stop] for record in records]

        return take_slice
    if match := _INDICES.match(expression):
        indices = [int(v) for v in match.group(1).split(",")]
        getter = operator.itemgetter(*indices)

        def pick(records: list) -> list:
            _check_rows(records, expression)
            try:
                if len(indices) == 1:
                    return [[getter(record)] for record in records]
                return [list(getter(record)) for record in records]
            except IndexError:
                shortest = min(len(record) for record in records)
                raise TransformError(
                    f"{what} {expression!r} selects column {max(indices, key=abs)} of a record "
                    f"with {shortest} columns"
                ) from None

        return pick
    if match := _KEY.match(expression):
        key = match.group(1)

        def value_of(records: list) -> list:
            _check_objects(records, expression)
            return [record.get(key) for record in records]

        return value_of
    if match := _KEYS.match(expression):
        keys = [k.strip().strip("'") for k in match.group(1).split(",")]

        def keep_keys(records: list) -> list:
            _check_objects(records, expression)
            return [{k: r[k] for k in keys if k in r} for r in records]

        return keep_keys
    raise TransformError(
        f"{what} {expression!r} is not a JSONPath the local runtime supports: use $, $[i:j], "
        "$[i,j,...], $.key or $['key1','key2']"
    )


def _check_rows(records: list, expression: str) -> None:
    if records and not isinstance(records[0], list):
        raise TransformError(f"filter {expression!r} selects columns; the records are not rows")


def _check_objects(records: list, expression: str) -> None:
    if records and not isinstance(records[0], dict):
        raise TransformError(f"filter {expression!r} selects keys; the records are not objects")


# --- the transform itself (runs inside the job's subprocess) ------------------------------------


def local_path(uri: str, what: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme != "file" or not parsed.path.startswith("/"):
        raise TransformError(f"{what} {uri!r} must be an absolute file:// URI locally")
    return Path(unquote(parsed.path))


def input_files(request: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """``(path, path relative to the prefix)`` of every input object, sorted, like S3 lists."""
    source = request["TransformInput"]["DataSource"]["S3DataSource"]
    if source.get("S3DataType", "S3Prefix") != "S3Prefix":
        raise TransformError(
            f"S3DataType {source['S3DataType']!r}: the local runtime reads S3Prefix"
        )
    root = local_path(source["S3Uri"], "TransformInput S3Uri")
    if not root.is_dir():
        raise TransformError(f"the transform input {root} does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise TransformError(f"the transform input {root} holds no files")
    return [(p, p.relative_to(root).as_posix()) for p in files]


def _mini_batches(
    path: Path, *, compressed: bool, max_bytes: int, max_records: int | None
) -> Iterator[tuple[int, int, list[str]]]:
    """``(first line number, last line number, lines)``: consecutive non-blank lines up to
    ``max_bytes`` of payload (a line larger than that on its own is an error, as on SageMaker)
    and ``max_records`` lines. Reads blocks and splits, decodes and measures them in C; only
    the cut between mini-batches is a Python step."""
    opener = gzip.open if compressed else open
    lines: list[str] = []  # decoded lines not yet in a mini-batch
    sizes: list[int] = []  # their payload bytes, newline included
    numbers: list[int] = []  # their line numbers in the file
    next_number = 1
    carry = b""
    cap = max_records or max_bytes  # a payload line holds at least its newline
    with opener(path, "rb") as stream:
        while True:
            block = stream.read(_READ_BLOCK)
            at_end = not block
            data = carry + block
            raws = data.split(b"\n")
            carry = b"" if at_end else raws.pop()
            if at_end and raws and not raws[-1]:
                raws.pop()
            block_numbers = range(next_number, next_number + len(raws))
            next_number += len(raws)
            if b"\r" in data:
                raws = [raw.rstrip(b"\r\n") for raw in raws]
            if all(map(bytes.strip, raws)):
                numbers.extend(block_numbers)
            else:  # blank lines carry no record (SageMaker skips them too)
                kept = [(n, raw) for n, raw in zip(block_numbers, raws, strict=True) if raw.strip()]
                raws = [raw for _, raw in kept]
                numbers.extend(n for n, _ in kept)
            block_sizes = [len(raw) + 1 for raw in raws]
            if block_sizes and max(block_sizes) > max_bytes:
                index = next(i for i, size in enumerate(block_sizes) if size > max_bytes)
                raise TransformError(
                    f"{path} line {numbers[len(lines) + index]} is {block_sizes[index] - 1} "
                    "bytes, more than MaxPayloadInMB allows"
                )
            try:
                decoded = list(map(bytes.decode, raws))
            except UnicodeDecodeError as error:
                index = next(i for i, raw in enumerate(raws) if not _is_utf8(raw))
                raise TransformError(
                    f"{path} line {numbers[len(lines) + index]} is not UTF-8: {error.reason}"
                ) from None
            lines.extend(decoded)
            sizes.extend(block_sizes)
            start = 0
            while start < len(lines):
                window = list(accumulate(sizes[start : start + cap]))
                count = bisect_right(window, max_bytes)
                if count == len(window) < cap and not at_end:
                    break  # the next block may still belong to this mini-batch
                stop = start + count
                yield numbers[start], numbers[stop - 1], lines[start:stop]
                start = stop
            del lines[:start], sizes[:start], numbers[:start]
            if at_end:
                return


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Format:
    """How records of one content type are parsed, sent to the model, and written back."""

    def __init__(self, content_type: str):
        media = content_type.split(";")[0].strip().lower()
        if media == "text/csv":
            self.kind = "csv"
        elif media in ("application/jsonlines", "application/x-jsonlines"):
            self.kind = "json"
        else:
            raise TransformError(
                f"content type {content_type!r}: the local runtime splits text/csv and "
                "application/jsonlines by line"
            )

    def parse(self, lines: list[str], plain: bool = False) -> list:
        """Records of ``lines``; ``plain``: CSV known to hold no quote character, where a comma
        always separates fields and str.split is several times faster than the csv module."""
        if self.kind == "csv":
            return [line.split(",") for line in lines] if plain else list(csv.reader(lines))
        return [json.loads(line) for line in lines]

    def dump(self, records: list, plain: bool = False) -> str:
        """Lines of ``records``; ``plain``: CSV fields known to hold no quote, comma or newline."""
        if self.kind == "csv":
            if plain:
                return "".join([",".join(record) + "\n" for record in records])
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows(records)
            return buffer.getvalue()
        return "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records)


# A leading CSV field the fast path reads without the csv module, where csv.reader reads it the
# same and csv.writer writes it back without quotes: quoted or not, with no quote, comma, CR, LF
# or NUL inside. The rest of the line, not empty, must hold no quote, CR or NUL (checked on the
# whole payload at once: a character class there cost twice the time): a comma there always
# separates fields.
_CSV_LEAD_FIELD = r'(?:"[^",\r\n\x00]*"|[^",\r\n\x00]*),'
_CSV_REST_EXCLUDES = ('"', "\r", "\x00")


class _CsvFastPath:
    """``DataProcessing`` of CSV lines without the csv module, for the filters
    :func:`include.sagemaker_requests.transform_data_processing` writes: ``InputFilter`` ``$``
    or ``$[k:]``; with ``JoinSource=Input``, no ``OutputFilter`` or one that keeps some of the
    ``k`` leading input fields and the output's last field (``$[0,1,-1]``).

    One regular expression splits every line of a mini-batch into its ``k`` leading fields and
    the rest, which is the model's payload as the csv module would write it. A mini-batch it
    does not match whole (a quote inside a field or past the ``k``-th, a quoted comma, a CR or a
    NUL, quotes in the model's output) takes the csv module's way: every record is read as
    csv.reader reads it and written as csv.writer writes it either way.
    """

    def __init__(self, lead: int, join: bool, keep: list[int] | None):
        self.lead = lead
        self.join = join
        self.keep = keep  # indices into the joined record; None: the whole record
        self.pattern = re.compile(f"^({_CSV_LEAD_FIELD * lead})(.+)$", re.MULTILINE)

    @classmethod
    def plan(cls, processing: Mapping[str, Any], join: bool) -> _CsvFastPath | None:
        """The fast path for these filters, or ``None`` when only the csv module's way fits."""
        input_filter = (processing.get("InputFilter") or "$").strip()
        output_filter = (processing.get("OutputFilter") or "$").strip()
        if input_filter == "$":
            lead = 0
        elif (match := _SLICE.match(input_filter)) and not match.group(2):
            lead = int(match.group(1) or 0)
            if lead < 0:
                return None
        else:
            return None
        if output_filter == "$":
            return cls(lead, join, None)
        match = _INDICES.match(output_filter)
        if not join or not match:
            return None
        keep = [int(v) for v in match.group(1).split(",")]
        if not all(0 <= i < lead or i == -1 for i in keep):
            return None
        return cls(lead, join, keep)

    def split(self, lines: list[str]) -> tuple[list[str], list[str], str] | None:
        """The leading fields of every line, unquoted and each followed by a comma; the rest of
        it; and the rests as the payload's lines. ``None`` if a line does not match."""
        matches = self.pattern.findall("\n".join(lines))
        if len(matches) != len(lines):
            return None
        leading, rests = zip(*matches, strict=True) if matches else ((), ())
        payload = "\n".join(rests) + "\n"
        if any(character in payload for character in _CSV_REST_EXCLUDES):
            return None
        # The leading fields hold no quote of their own: what quotes there are wrap a field.
        return "\n".join(leading).replace('"', "").split("\n"), list(rests), payload

    @staticmethod
    def outputs(body: str) -> list[str] | None:
        """The model's output lines, when no quote makes the csv module necessary."""
        if '"' in body or "\x00" in body:
            return None
        lines = body.splitlines()
        if not all(map(str.strip, lines)):
            lines = [line for line in lines if line.strip()]
        return lines

    def output_lines(
        self, leading: list[str], rests: list[str], outputs: list[str]
    ) -> list[str] | None:
        """Output lines as the csv module's join, filter and writer make them, or ``None``."""
        if not self.join:
            return outputs
        if self.keep is None:
            return [f"{a}{b},{c}" for a, b, c in zip(leading, rests, outputs, strict=True)]
        last = outputs
        if -1 in self.keep and "," in "\n".join(outputs):
            last = [line.rpartition(",")[2] for line in outputs]
        if self.keep == [*range(self.lead), -1]:
            lines = list(map(operator.add, leading, last))
        else:
            fields = [line.split(",") for line in leading]
            lines = [
                ",".join([f[i] if i >= 0 else o for i in self.keep])
                for f, o in zip(fields, last, strict=True)
            ]
        # csv.writer writes a record of one empty field as "": the csv module's way does that.
        return None if len(self.keep) == 1 and "" in lines else lines


def transform_file(
    path: Path,
    out_path: Path,
    request: Mapping[str, Any],
    model: Any,
    handlers: Any,
    *,
    max_records: int | None = None,
) -> int:
    """Score one input file into ``out_path``; returns the records written."""
    transform_input = request["TransformInput"]
    processing = request.get("DataProcessing") or {}
    input_format = _Format(transform_input.get("ContentType", "text/csv"))
    accept = request["TransformOutput"].get("Accept") or transform_input.get("ContentType")
    output_format = _Format(accept)
    input_filter = compile_filter(processing.get("InputFilter"), "InputFilter")
    output_filter = compile_filter(processing.get("OutputFilter"), "OutputFilter")
    join = processing.get("JoinSource", "None") == "Input"
    if join and input_format.kind != output_format.kind:
        raise TransformError(
            f"JoinSource=Input joins records of one format; ContentType is "
            f"{transform_input.get('ContentType')!r} and Accept {accept!r}"
        )
    fast = (
        _CsvFastPath.plan(processing, join)
        if input_format.kind == output_format.kind == "csv"
        else None
    )
    single = request.get("BatchStrategy", "MultiRecord") == "SingleRecord"
    max_bytes = int(request.get("MaxPayloadInMB", 6) or 6) * MB
    records_cap = 1 if single else max_records
    # No blank line after each record: AssembleWith=Line puts one newline between records.
    assemble = request["TransformOutput"].get("AssembleWith", "None") == "Line"

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    written = 0
    try:
        with open(tmp_path, "w", encoding="utf-8", newline="") as out:
            for first_line, last_line, lines in _mini_batches(
                path,
                compressed=transform_input.get("CompressionType", "None") == "Gzip",
                max_bytes=max_bytes,
                max_records=records_cap,
            ):
                where = f"{path} lines {first_line}-{last_line}"
                split = fast.split(lines) if fast is not None else None
                records = None
                if split is not None:
                    leading, rests, payload = split
                else:
                    # Fields split from quote-free CSV lines hold no quote, comma or newline.
                    plain = input_format.kind == "csv" and not any('"' in line for line in lines)
                    records = _parse(input_format, lines, plain, where)
                    sent = records if input_filter is None else input_filter(records)
                    payload = input_format.dump(sent, plain)
                try:
                    body, _ = handlers.output_fn(
                        handlers.predict_fn(
                            handlers.input_fn(payload, transform_input["ContentType"]), model
                        ),
                        accept,
                    )
                except ValueError as error:  # InferenceInputError names the record and column
                    raise TransformError(f"{where}: {error}") from None
                output_lines = _CsvFastPath.outputs(body) if split is not None else None
                if output_lines is not None:
                    _check_one_per_record(join, len(output_lines), len(lines), where)
                    output_lines = fast.output_lines(leading, rests, output_lines)
                if output_lines is not None:
                    text = "\n".join(output_lines) + "\n" if output_lines else ""
                    written += len(output_lines)
                else:
                    if records is None:
                        plain = not any('"' in line for line in lines)
                        records = _parse(input_format, lines, plain, where)
                    plain_output = output_format.kind == "csv" and '"' not in body
                    outputs = output_format.parse(
                        [line for line in body.splitlines() if line.strip()], plain_output
                    )
                    if join:
                        _check_one_per_record(join, len(outputs), len(records), where)
                        if output_format.kind == "csv":
                            outputs = [r + o for r, o in zip(records, outputs, strict=True)]
                        else:
                            outputs = [
                                {**r, "SageMakerOutput": o}
                                for r, o in zip(records, outputs, strict=True)
                            ]
                    plain_output = plain_output and (plain or not join)
                    if output_filter is not None:
                        outputs = output_filter(outputs)
                    text = output_format.dump(outputs, plain_output)
                    written += len(outputs)
                out.write(text if assemble else text.replace("\n", ""))
        os.replace(tmp_path, out_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return written


def _parse(input_format: _Format, lines: list[str], plain: bool, where: str) -> list:
    try:
        return input_format.parse(lines, plain)
    except (json.JSONDecodeError, csv.Error) as error:
        raise TransformError(f"{where}: {error}") from None


def _check_one_per_record(join: bool, outputs: int, records: int, where: str) -> None:
    if join and outputs != records:
        raise TransformError(
            f"{where}: the model returned {outputs} records for {records}; JoinSource=Input "
            "needs one per input record"
        )


def transform(
    request: Mapping[str, Any], model_dir: str | Path, *, max_records: int | None = None
) -> dict[str, Any]:
    """Score every input file of ``request`` with the model in ``model_dir``, in this process.

    Returns ``{"files": n, "records": n, "output_uris": [...]}``.
    """
    handlers = load_handlers(model_dir)
    model = handlers.model_fn(str(model_dir))
    out_root = local_path(request["TransformOutput"]["S3OutputPath"], "S3OutputPath")
    records = 0
    output_uris = []
    for path, relative in input_files(request):
        out_path = out_root / f"{relative}{OUTPUT_SUFFIX}"
        count = transform_file(path, out_path, request, model, handlers, max_records=max_records)
        log.info("%s: %d records -> %s", path, count, out_path)
        records += count
        output_uris.append(f"file://{out_path}")
    return {"files": len(output_uris), "records": records, "output_uris": output_uris}


def load_handlers(model_dir: str | Path) -> Any:
    """The model's own serving handlers: ``code/inference.py`` of its unpacked ``model.tar.gz``,
    imported as a top-level module with ``code/`` on ``sys.path``, as the serving container does."""
    code_dir = Path(model_dir) / "code"
    entry_point = code_dir / "inference.py"
    if not entry_point.is_file():
        raise FileNotFoundError(
            f"{entry_point}: the model artifact carries no code/inference.py, so no serving "
            "container could load it either"
        )
    # A process serves one model: handlers of another model's code/ loaded earlier go first.
    for name in [n for n in sys.modules if n == "inference" or n.startswith("_headrace_serving")]:
        del sys.modules[name]
    sys.path.insert(0, str(code_dir))
    spec = importlib.util.spec_from_file_location("inference", entry_point)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def extract_model(model_uri: str, into: Path) -> Path:
    """Unpack a ``model.tar.gz`` (a file:// URI) into ``into``, refusing paths that leave it."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(local_path(model_uri, "ModelDataUrl"), "r:gz") as archive:
        archive.extractall(into, filter="data")
    return into


# --- durable jobs: on the one local supervisor (include/local_jobs.py) --------------------------

KIND = "transform"


def transform_job_dir(work_root: Path | str, job_name: str) -> Path:
    return local_jobs.job_dir(work_root, KIND, job_name)


def find_transform_job(name: str, *, work_root: Path | str) -> dict | None:
    """Like DescribeTransformJob, or ``None`` if no job of that name was started here."""
    description = local_jobs.describe(transform_job_dir(work_root, name))
    if description is None:
        return None
    # request.json holds {"TransformJob": body, "Model": CreateModel body}; a bare body is a
    # start that died before the supervisor existed (see start_transform_job).
    request = description["Request"].get("TransformJob", description["Request"])
    out: dict[str, Any] = {
        "TransformJobName": name,
        "TransformJobStatus": description["Status"],
        "ModelName": request.get("ModelName"),
        "TransformInput": request.get("TransformInput"),
        "TransformOutput": request.get("TransformOutput"),
        "DataProcessing": request.get("DataProcessing"),
        "TransformStartTime": description.get("StartTime"),
        "LocalJobDir": description["JobDir"],
        "LogPath": description["LogPath"],
        "Pid": description.get("Pid"),
        **description["Result"],
    }
    for key, renamed in (("EndTime", "TransformEndTime"), ("FailureReason", "FailureReason")):
        if key in description:
            out[renamed] = description[key]
    if description.get("Starting"):
        out["Starting"] = True
    return out


def start_transform_job(
    request: Mapping[str, Any],
    model_request: Mapping[str, Any],
    *,
    work_root: Path | str,
    max_records: int | None = None,
    stop_grace_s: float = DEFAULT_STOP_GRACE_S,
) -> tuple[dict, bool]:
    """The local job named by ``request``: the running or completed one, else a new one.

    :param request: a CreateTransformJob body with file:// URIs.
    :param model_request: the CreateModel body of its ``ModelName`` (its ``ModelDataUrl`` is
        the model.tar.gz the job serves).
    :param max_records: at most this many records per mini-batch (a local memory knob).
    Returns the description and whether this call started the job.
    """
    if model_request.get("ModelName") != request.get("ModelName"):
        raise TransformError(
            f"the transform names model {request.get('ModelName')!r}, the CreateModel body "
            f"{model_request.get('ModelName')!r}"
        )
    name = request["TransformJobName"]
    steps = local_jobs.JobSteps(
        # The training environment's Python: like the SageMaker PyTorch container, not the worker.
        command=[
            training_python(),
            "-m",
            "include.local_transform",
            "run",
            str(transform_job_dir(work_root, name)),
        ],
        stop_grace_s=stop_grace_s,
    )
    stored = {
        "TransformJob": dict(request),
        "Model": dict(model_request),
        "MaxRecords": max_records,
    }
    _, started = local_jobs.start(transform_job_dir(work_root, name), stored, steps)
    return find_transform_job(name, work_root=work_root), started


def wait_for_transform_job(
    name: str, *, work_root: Path | str, poll_interval: float = 0.5, timeout: float | None = None
) -> dict:
    """Block until the job ends; its Completed description, else :class:`LocalJobError`."""
    local_jobs.wait(
        transform_job_dir(work_root, name), timeout=timeout, poll_interval=poll_interval
    )
    return find_transform_job(name, work_root=work_root)


def run_transform_job(
    request: Mapping[str, Any],
    model_request: Mapping[str, Any],
    *,
    work_root: Path | str,
    max_records: int | None = None,
    poll_interval: float = 0.5,
) -> dict:
    """Start (or re-attach to) the job and wait for it; return its Completed description."""
    description, _ = start_transform_job(
        request, model_request, work_root=work_root, max_records=max_records
    )
    return wait_for_transform_job(
        description["TransformJobName"], work_root=work_root, poll_interval=poll_interval
    )


def stop_transform_job(
    name: str, *, work_root: Path | str, grace_period: float = DEFAULT_STOP_GRACE_S
) -> bool:
    """Stop a running job, like StopTransformJob. Returns whether a running job was signalled."""
    return local_jobs.stop(transform_job_dir(work_root, name), grace_period=grace_period)


def _run_job(job_dir: Path) -> int:
    """The job's command: unpack the model, transform, report the outcome to the supervisor."""
    stored = read_json(job_dir / "request.json")
    request, model_request = stored["TransformJob"], stored["Model"]
    try:
        model_uri = model_request["PrimaryContainer"]["ModelDataUrl"]
        model_dir = extract_model(model_uri, job_dir / "model")
        result = transform(request, model_dir, max_records=stored.get("MaxRecords"))
    except Exception as error:  # recorded as the job's FailureReason, as SageMaker does
        log.exception("transform job %s failed", request.get("TransformJobName"))
        local_jobs.write_failure(job_dir, f"{type(error).__name__}: {error}")
        return 1
    local_jobs.write_result(
        job_dir, RecordsWritten=result["records"], OutputUris=result["output_uris"]
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "run":
        print("usage: python -m include.local_transform run <job dir>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return _run_job(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main())
