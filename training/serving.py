"""The serving handlers behind ``inference.py``: load a model directory, parse CSV or JSON lines,
score P(label = 1), and write the scores with the request's id columns.

Requests (``input_fn``):

- ``text/csv``: with a header (named columns, in any order; extra columns such as the label are
  ignored), or without one: each line holds the model's features in order, optionally preceded by
  the id columns. ``text/csv;header=present|absent`` says which; otherwise a first line that names
  every feature is taken as the header.
- ``application/jsonlines`` (or ``application/x-jsonlines``): one JSON object per line, keys the
  feature names and optionally the id columns. ``application/json``: a list of such objects.

For batch transform with ``SplitType=Line``, send JSON lines (or headerless CSV): each mini-batch
is a separate request, and only the first would carry a CSV header.

Responses (``output_fn``): ``text/csv`` lines ``<ids…>,score`` (a header line with
``text/csv;header=present``), JSON lines ``{"customer_id": …, "score": …}``, or ``application/json``
``{"predictions": [...]}``. Bad input raises :class:`InferenceInputError` naming the record, the
line and the column. numpy and torch, and pandas' C CSV reader for the common batch-transform
body (headerless, every line the model's features in order, every value a finite number): the
SageMaker PyTorch serving image installs pandas, and the csv module and ``float`` parse that body
about ten times slower than the model scores it (``bench/scoring.py``). Any other body, or one
the C reader does not take whole, goes the csv module's way, which names the first bad cell.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .model import load_trained_model, predict_scores
from .preprocessing import PreprocessingError, Standardizer

log = logging.getLogger("headrace.serving")

SCORE_COLUMN = "score"
CSV = "text/csv"
JSON_LINES = ("application/jsonlines", "application/x-jsonlines")
JSON = "application/json"
# The bytes of a CSV body that _numeric_csv_matrix hands to pandas' C reader.
_NUMERIC_CSV_BYTES = b"0123456789+-.eE,\n"


class InferenceInputError(ValueError):
    """A request or response cannot be handled; the message names the record, line and column."""


@dataclass
class ServedModel:
    model: torch.nn.Module
    standardizer: Standardizer
    features: list[str]
    id_columns: list[str]
    device: torch.device


@dataclass
class Records:
    """A parsed request: rows of values, with their column names when the format carries them."""

    format: str  # "csv" or "json"
    rows: list[list] | None  # None: CSV not split into fields yet (see ``text``)
    columns: list[str] | None = None  # None: CSV whose header is not known yet
    header: bool | None = None  # CSV: from the content type's header= parameter; None: detect
    text: str | None = None  # CSV: the request body, split into ``rows`` only when needed

    def csv_rows(self) -> list[list]:
        """The rows, split from ``text`` by the csv module on first use (blank lines skipped)."""
        if self.rows is None:
            self.rows = [row for row in csv.reader(io.StringIO(self.text or "")) if row]
        return self.rows


@dataclass
class Predictions:
    ids: dict[str, list]  # id column -> the request's values, in row order
    scores: np.ndarray  # float32 P(label = 1)


def _media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``text/csv; header=present`` -> ``("text/csv", {"header": "present"})``."""
    parts = [part.strip() for part in (value or "").split(";")]
    params = {}
    for part in parts[1:]:
        key, _, val = part.partition("=")
        params[key.strip().lower()] = val.strip().strip('"').lower()
    return parts[0].lower(), params


def model_fn(model_dir):
    """The model of ``model_dir`` (``model.pt``, ``model_config.json``, ``preprocessing.json``)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, config = load_trained_model(model_dir, map_location=device)
    standardizer = Standardizer.load(model_dir)
    if list(standardizer.features) != list(config["features"]):
        raise PreprocessingError(
            f"{Path(model_dir)}: preprocessing.json and model_config.json list different features"
        )
    log.info("model loaded from %s on %s: %d features", model_dir, device, len(config["features"]))
    return ServedModel(
        model.to(device), standardizer, list(config["features"]), list(config["id_columns"]), device
    )


def input_fn(request_body, request_content_type):
    """Parse a request body (str or bytes) of ``text/csv``, JSON lines or ``application/json``."""
    media_type, params = _media_type(request_content_type)
    text = (
        request_body.decode("utf-8")
        if isinstance(request_body, bytes | bytearray)
        else request_body
    )
    if media_type == CSV:
        header = {"present": True, "absent": False}.get(params.get("header", ""))
        return Records("csv", None, header=header, text=text)
    if media_type in JSON_LINES:
        objects = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise InferenceInputError(
                    f"line {line_number} is not valid JSON: {error}"
                ) from None
            if not isinstance(value, dict):
                raise InferenceInputError(f"line {line_number} is not a JSON object")
            objects.append(value)
        return _named_records(objects)
    if media_type == JSON:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise InferenceInputError(f"the request is not valid JSON: {error}") from None
        objects = value if isinstance(value, list) else [value]
        if not all(isinstance(item, dict) for item in objects):
            raise InferenceInputError(
                "application/json input must be an object or a list of objects"
            )
        return _named_records(objects)
    raise InferenceInputError(
        f"content type {request_content_type!r} is not supported: use {CSV}, "
        f"{JSON_LINES[0]} or {JSON}"
    )


def _named_records(objects: list[dict]) -> Records:
    columns: dict[str, None] = {}
    for item in objects:
        columns.update(dict.fromkeys(item))
    names = list(columns)
    # A key missing from a record reads as None, which the feature check reports by record.
    return Records("json", [[item.get(name) for name in names] for item in objects], names)


def predict_fn(input_data, model):
    """Scores for every record of ``input_data`` (:class:`Records`, or a pandas DataFrame)."""
    records = _as_records(input_data)
    matrix = _numeric_csv_matrix(records, model)
    if matrix is not None:
        scores = predict_scores(model.model, model.standardizer.transform(matrix), model.device)
        return Predictions({}, scores)
    columns, rows, first_line = _resolve_columns(records, model)
    positions = {name: index for index, name in enumerate(columns)}
    if missing := [name for name in model.features if name not in positions]:
        raise InferenceInputError(
            f"the input lacks feature columns {missing} (it has {columns}); every feature of "
            f"the model is required"
        )
    matrix = _feature_matrix(
        rows,
        [positions[name] for name in model.features],
        model.features,
        records.format,
        first_line,
    )
    scores = predict_scores(model.model, model.standardizer.transform(matrix), model.device)
    ids = {
        name: [row[positions[name]] for row in rows]
        for name in model.id_columns
        if name in positions
    }
    return Predictions(ids, scores)


def _as_records(input_data) -> Records:
    if isinstance(input_data, Records):
        return input_data
    if hasattr(input_data, "columns") and hasattr(input_data, "to_numpy"):
        return Records(
            "frame",
            input_data.to_numpy(dtype=object).tolist(),
            [str(c) for c in input_data.columns],
        )
    raise InferenceInputError(f"cannot predict on a {type(input_data).__name__}")


def _numeric_csv_matrix(records: Records, model: ServedModel) -> np.ndarray | None:
    """The feature matrix of a headerless CSV body whose lines hold exactly the model's features,
    every value a finite number, read by pandas' C reader; ``None`` for any other body.

    Only bodies both readers read alike come here: digits, signs, points, exponents, commas and
    newlines, nothing else (the C reader would take ``true`` as 1 where the csv module's way
    refuses it; no quote, space or CR either). Whatever the C reader then refuses (an empty
    field), reads as NaN (a short line) or reads to another width goes the csv module's way,
    which reports the first bad cell by record, line and column.
    """
    text = records.text
    if records.format != "csv" or text is None or records.header:
        return None
    data = text.encode()
    if data.translate(None, _NUMERIC_CSV_BYTES):
        return None  # a letter (a header, true, inf, NA), a quote, a space, ...
    if records.header is None:
        body = text.lstrip("\n")
        first = body[: body.find("\n")] if "\n" in body else body
        if set(model.features) <= set(first.split(",")):
            return None  # a header line (of features named by numbers)
    try:
        # No NA markers: a little faster, and an empty field then fails here.
        frame = pd.read_csv(
            io.BytesIO(data), header=None, dtype=np.float64, engine="c", na_filter=False
        )
    except ValueError:  # pandas' ParserError and EmptyDataError are ValueErrors
        return None
    if frame.shape[1] != len(model.features):
        return None
    matrix = frame.to_numpy(dtype=np.float64)
    return matrix if np.all(np.isfinite(matrix)) else None


def _resolve_columns(records: Records, model: ServedModel) -> tuple[list[str], list[list], int]:
    """Column names, data rows and the line number of the first data row (1-based)."""
    if records.columns is not None:
        return records.columns, records.rows, 1
    rows = records.csv_rows()
    header = records.header
    if header is None:
        header = bool(rows) and set(model.features) <= {field.strip() for field in rows[0]}
    if header:
        if not rows:
            raise InferenceInputError("the CSV input is empty: no header line")
        return [field.strip() for field in rows[0]], rows[1:], 2
    width = len(model.features)
    with_ids = len(model.id_columns) + width
    for number, row in enumerate(rows, start=1):
        if len(row) not in (width, with_ids):
            raise InferenceInputError(
                f"CSV line {number} has {len(row)} fields; without a header a line holds the "
                f"{width} features in model order, or the {len(model.id_columns)} id columns "
                f"{model.id_columns} and then the features (a header line must name every feature)"
            )
    if rows and any(len(row) != len(rows[0]) for row in rows):
        raise InferenceInputError("CSV lines without a header must all have the same width")
    names = list(model.features)
    if rows and len(rows[0]) == with_ids:
        names = [*model.id_columns, *names]
    return names, rows, 1


def _feature_matrix(rows, indices, features, source, first_line) -> np.ndarray:
    def where(record: int) -> str:
        if source == "frame":
            return f"row {record}"
        return f"record {record + 1} (line {record + first_line})"

    try:
        matrix = np.array([[row[i] for i in indices] for row in rows], dtype=np.float64)
    except (TypeError, ValueError, IndexError):
        matrix = None
    if matrix is None or matrix.ndim != 2 or not np.all(np.isfinite(matrix)):
        # The slow path only runs to name the first bad cell.
        for record, row in enumerate(rows):
            for index, name in zip(indices, features, strict=True):
                value = row[index] if index < len(row) else None
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise InferenceInputError(f"{where(record)} column {name!r} has no value")
                if not _is_number(value):
                    raise InferenceInputError(
                        f"{where(record)} column {name!r}: {value!r} is not a finite number"
                    )
    if matrix is None:
        raise InferenceInputError("the input's feature values are not numbers")
    return matrix.reshape(len(rows), len(indices))


def _is_number(value) -> bool:
    # JSON true/false count as 1/0, as numpy reads them: boolean features are 0/1 doubles.
    if isinstance(value, str):
        value = value.strip()
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _plain(value):
    """An id value as JSON can carry it (numpy scalars and dates from a DataFrame included)."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def output_fn(prediction, accept):
    """``(body, content type)`` of the scores with their ids, as CSV, JSON lines or JSON."""
    media_type, params = _media_type(accept)
    if media_type == CSV and not prediction.ids:
        # Scores alone: the lines csv.writer would write (str of each float), without it.
        lines = list(map(repr, prediction.scores.tolist()))
        if params.get("header") == "present":
            lines.insert(0, SCORE_COLUMN)
        return "\n".join(lines) + "\n" if lines else "", accept
    names = [*prediction.ids, SCORE_COLUMN]
    columns = [[_plain(v) for v in values] for values in prediction.ids.values()]
    columns.append([float(score) for score in prediction.scores])
    rows = list(zip(*columns, strict=True)) if columns[-1] else []
    if media_type == CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if params.get("header") == "present":
            writer.writerow(names)
        writer.writerows(rows)
        return buffer.getvalue(), accept
    if media_type in JSON_LINES:
        body = "".join(json.dumps(dict(zip(names, row, strict=True))) + "\n" for row in rows)
        return body, media_type
    if media_type in (JSON, "*/*", ""):
        body = json.dumps({"predictions": [dict(zip(names, row, strict=True)) for row in rows]})
        return body, JSON
    raise InferenceInputError(
        f"accept type {accept!r} is not supported: use {CSV}, {JSON_LINES[0]} or {JSON}"
    )
