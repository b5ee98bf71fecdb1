"""The cost allocation tags of every AWS job request headrace sends, made in one place.

A job is tagged ``project=headrace``, ``dataset``, ``dag`` (the DAG id) and ``run`` (the DAG run
id), then with its dataset spec's ``tags:`` and the job kind's own (e.g. ``model-version``), so
the bill splits by dataset, DAG and run once the keys are activated as cost allocation tags
(docs/operating-on-mwaa.md). The tag rules are :func:`spark_jobs.dataset_spec.aws_tag_problem`'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from include.config import DATASETS_DIR
from spark_jobs.dataset_spec import (
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS,
    RESERVED_TAG_KEYS,
    aws_tag_problem,
    load_spec,
)

PROJECT = "headrace"
_NOT_TAG_TEXT = re.compile(r"[^A-Za-z0-9 _.:/=+\-@]")


class TagError(ValueError):
    """A job's tags break an AWS tag rule; the message names the tag."""


def check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``tags`` as a dict, or :class:`TagError` naming the first tag AWS would refuse (or the
    count, over :data:`~spark_jobs.dataset_spec.MAX_TAGS`)."""
    if len(tags) > MAX_TAGS:
        raise TagError(f"{len(tags)} tags ({', '.join(tags)}); AWS allows at most {MAX_TAGS}")
    for key, value in tags.items():
        if problem := aws_tag_problem(key, value):
            raise TagError(f"tag {key!r}={value!r}: {problem}")
    return dict(tags)


def identity_tag_value(text: str) -> str:
    """An Airflow id as a tag value.

    Scheduled and asset-triggered run ids (``scheduled__2026-01-07T00:00:00+00:00``) and
    headrace's DAG ids fit the tag rule as they are, but a run id given through the API or UI
    may hold ``~`` (Airflow's default ``allowed_run_id_pattern``, and deployers may widen it) and
    a DAG id any Unicode letter; a job must not fail over its label, so those characters become
    ``_`` rather than an error.
    """
    return _NOT_TAG_TEXT.sub("_", text)[:MAX_TAG_VALUE_LENGTH]


def job_tags(
    dataset: str | None,
    *,
    dag_id: str,
    run_id: str,
    extra: Mapping[str, str] | None = None,
    datasets_dir: Path = DATASETS_DIR,
) -> dict[str, str]:
    """The cost allocation tags of one job: ``project``, ``dataset``, ``dag``, ``run``, the
    dataset spec's ``tags:`` and ``extra``.

    :param dataset: the dataset the job works on; ``None`` (a job of no dataset): no
        ``dataset`` tag and no spec tags.
    :param dag_id: the DAG the job's task belongs to.
    :param run_id: the DAG run that started the job.
    :param extra: the job kind's own tags, e.g. ``{"model-version": "3"}``; their keys are
        :data:`~spark_jobs.dataset_spec.RESERVED_TAG_KEYS`, so a spec cannot set them too.
    :param datasets_dir: where ``<dataset>.yaml`` is.
    :raises spark_jobs.dataset_spec.SpecError: the spec is missing or invalid (a bad ``tags:``
        entry names the file and the key).
    :raises TagError: a tag AWS would refuse, named.
    """
    tags = {"project": PROJECT}
    if dataset:
        tags["dataset"] = dataset
    tags["dag"] = identity_tag_value(dag_id)
    tags["run"] = identity_tag_value(run_id)
    if dataset:
        tags.update(load_spec(Path(datasets_dir) / f"{dataset}.yaml").tags)
    for key, value in (extra or {}).items():
        if key not in RESERVED_TAG_KEYS or key in tags:
            # A programming error: the key would be one a spec may set, or would overwrite one.
            raise TagError(
                f"job tag {key!r} must be one of the reserved keys not set already "
                f"({', '.join(sorted(RESERVED_TAG_KEYS - set(tags)))}); add a new one to "
                "spark_jobs.dataset_spec.RESERVED_TAG_KEYS"
            )
        tags[key] = value
    return check_tags(tags)
