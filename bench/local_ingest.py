"""The command of one local ingest job, as the ingestion DAG starts it, for the benchmarks that
time it from start to exit (bench/ingestion.py's cold job, bench/job_startup.py's quick JIT).

Light imports only: bench/job_startup.py runs in the worker environment, which has no pyspark.
"""

from __future__ import annotations

import os
from pathlib import Path

# A throwaway salt for throwaway synthetic data; real runs read theirs from env or Secrets Manager.
BENCH_SALT = "bench-only-salt-not-a-secret"


def local_ingest_command(
    python: str, landing: Path, lake: Path, ds: str
) -> tuple[list[str], dict[str, str]]:
    """``python -m spark_jobs.ingest`` with the argv the ingestion DAG gives it for churn's day
    ``ds`` landed under ``landing``, writing to ``lake``; and its environment."""
    from include.config import load_settings
    from include.ingestion import LOCAL_PII_SALT_ENV, ingest_job_args

    settings = load_settings({"PIPELINE_TARGET": "local", "HEADRACE_LAKE_ROOT": lake.as_uri()})
    argv = ingest_job_args(settings, "churn", ds, landing_uri=str(landing))
    env = {**os.environ, LOCAL_PII_SALT_ENV: BENCH_SALT, "SPARK_LOCAL_IP": "127.0.0.1"}
    env.setdefault("HEADRACE_SPARK_LOG_LEVEL", "ERROR")
    return [python, "-m", "spark_jobs.ingest", *argv], env
