"""A training channel's parquet files as a float32 feature matrix and a 0/1 label vector.

A channel is a directory (``SM_CHANNEL_TRAIN``…) holding the features job's parquet files, at
any depth. The features are every column except the id columns, the audit columns (attributes
kept out of the model and read only for the fairness audit), the label and ``split``; the
validation and test channels must carry exactly the train channel's features. Errors name the
channel, the file, the row (0-based within the file) and the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Written by the features job beside the features; never a model input.
SPLIT_COLUMN = "split"
# The group of a row whose audit column is null.
MISSING_GROUP = "(missing)"


class ChannelError(ValueError):
    """A channel cannot be used for training; the message names the channel, file, row, column."""


@dataclass
class ChannelData:
    name: str
    directory: Path
    files: list[Path]
    feature_names: list[str]
    features: np.ndarray  # float32, rows x features, as read (not standardized)
    labels: np.ndarray  # float32, 0.0 or 1.0
    # The id columns the files carry (a pyarrow Table, row-aligned with ``features``), so scores
    # can be written back with their keys; None when the files hold none of --id-columns.
    ids: object | None = None
    # Audit column → every row's value as a string (null as "(missing)"), row-aligned with
    # ``features``: the groups of the fairness audit, never a model input.
    audit: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.labels.shape[0])


def parquet_files(directory: str | Path) -> list[Path]:
    """Every ``*.parquet`` under ``directory``, in a stable order (the row order follows it)."""
    root = Path(directory)
    # Spark and Hadoop mark their own files with a leading "_" or "." (_SUCCESS, .crc).
    return sorted(
        path
        for path in root.rglob("*.parquet")
        if path.is_file()
        and not any(part.startswith(("_", ".")) for part in path.relative_to(root).parts)
    )


def feature_names_of(
    columns: Sequence[str],
    *,
    label: str,
    id_columns: Sequence[str],
    audit_columns: Sequence[str] = (),
) -> list[str]:
    """The model's inputs: every column but the ids, the audit columns, the label and ``split``,
    in file order."""
    excluded = {label, SPLIT_COLUMN, *id_columns, *audit_columns}
    return [name for name in columns if name not in excluded]


def load_channel(
    name: str,
    directory: str | Path,
    *,
    label: str,
    id_columns: Sequence[str],
    feature_names: Sequence[str] | None = None,
    audit_columns: Sequence[str] = (),
) -> ChannelData:
    """Read a channel; ``feature_names`` (the train channel's) fixes the columns of the others.

    ``audit_columns`` must be in every file; they are read as strings for the fairness audit
    and never become features.
    """
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    directory = Path(directory)
    if not directory.is_dir():
        raise ChannelError(f"channel {name}: directory {directory} does not exist")
    files = parquet_files(directory)
    if not files:
        raise ChannelError(f"channel {name}: no *.parquet files under {directory}")

    blocks, labels, id_tables = [], [], []
    audit_blocks: dict[str, list[np.ndarray]] = {column: [] for column in audit_columns}
    not_features = {"id_columns": id_columns, "audit_columns": audit_columns}
    id_names: list[str] | None = None
    for path in files:
        where = f"channel {name}: {path.relative_to(directory)}"
        try:
            # The file alone: read_table would add hive columns (ds=, split=) from the path.
            table = pq.ParquetFile(path).read()
        except Exception as error:
            raise ChannelError(f"{where} is not readable parquet: {error}") from None
        columns = table.column_names
        if label not in columns:
            raise ChannelError(f"{where} has no label column {label!r}")
        if feature_names is None:
            feature_names = feature_names_of(columns, label=label, **not_features)
            if not feature_names:
                raise ChannelError(f"{where} has no feature columns besides the ids and the label")
        expected = set(feature_names)
        if missing_audit := [c for c in audit_columns if c not in columns]:
            raise ChannelError(
                f"{where} lacks audit columns {missing_audit} (--audit-attributes); the "
                "features job writes them when the spec lists them in features.audit_attributes"
            )
        present = set(feature_names_of(columns, label=label, **not_features))
        if missing := [c for c in feature_names if c not in present]:
            raise ChannelError(f"{where} lacks feature columns {missing}")
        if extra := sorted(present - expected):
            raise ChannelError(
                f"{where} has columns {extra} that are not features of the train channel "
                f"(or list them in --id-columns or --audit-attributes)"
            )
        for column in [*feature_names, label]:
            kind = table.schema.field(column).type
            if not (pat.is_integer(kind) or pat.is_floating(kind) or pat.is_boolean(kind)):
                # pandas 3 writes strings as large_string: the same kind to the reader.
                shown = "string" if pat.is_string(kind) or pat.is_large_string(kind) else kind
                raise ChannelError(
                    f"{where} column {column!r} is {shown}, not numeric (a column that is not a "
                    "model input belongs in --id-columns or --audit-attributes)"
                )
        block = np.empty((table.num_rows, len(feature_names)), dtype=np.float32)
        for index, column in enumerate(feature_names):
            block[:, index] = _finite(table.column(column), where=where, column=column)
        target = _finite(table.column(label), where=where, column=label)
        if bad := np.flatnonzero((target != 0) & (target != 1)).tolist():
            raise ChannelError(
                f"{where} row {bad[0]} column {label!r} is {target[bad[0]]}, not 0 or 1"
            )
        present_ids = [column for column in id_columns if column in columns]
        if id_names is None:
            id_names = present_ids
        elif present_ids != id_names:
            raise ChannelError(f"{where} has id columns {present_ids}, other files {id_names}")
        blocks.append(block)
        labels.append(target)
        id_tables.append(table.select(id_names))
        for column in audit_columns:
            values = table.column(column).to_pylist()
            audit_blocks[column].append(
                np.array([MISSING_GROUP if v is None else str(v) for v in values], dtype=object)
            )

    features = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    label_vector = np.concatenate(labels) if len(labels) > 1 else labels[0]
    if features.shape[0] == 0:
        raise ChannelError(f"channel {name}: the files under {directory} hold no rows")
    ids = None
    if id_names:
        import pyarrow as pa

        ids = pa.concat_tables(id_tables, promote_options="permissive")
    audit = {column: np.concatenate(parts).astype(str) for column, parts in audit_blocks.items()}
    return ChannelData(
        name, directory, files, list(feature_names), features, label_vector, ids, audit
    )


def _finite(values, *, where: str, column: str) -> np.ndarray:
    """A pyarrow column as float32; a null, a NaN or an infinity is an error."""
    import pyarrow.compute as pc

    if values.null_count:
        row = int(pc.index(pc.is_null(values), True).as_py())
        raise ChannelError(f"{where} row {row} column {column!r} is null")
    as_float = values.to_numpy(zero_copy_only=False).astype(np.float32)
    if not np.all(np.isfinite(as_float)):
        row = int(np.flatnonzero(~np.isfinite(as_float))[0])
        raise ChannelError(f"{where} row {row} column {column!r} is {as_float[row]}, not finite")
    return as_float
