"""Run headrace's lifecycle on the aws target against a moto server on 127.0.0.1, recording every
AWS request the DAGs send. Run as a script by tests/contract/test_aws_contract_lifecycle.py:

    python tests/contract/aws_lifecycle_driver.py ENGINE LOG_PATH [DAGS_FOLDER]

``ENGINE`` is ``glue`` (the whole lifecycle) or ``emr_serverless`` / ``emr_ec2`` (lake setup and
ingestion only: validation on those engines is Deequ, which needs its JVM jars). ``AIRFLOW_HOME``
points at a migrated database. Writes every request as one JSON line to ``LOG_PATH`` and prints
one ``OUTCOME {json}`` line: DAG run and task states, XComs of interest, the capture's counts.

How nothing escapes the record (``RequestCapture`` of tests/aws_fakes.py, which every aws-target
test records with): every botocore session, sync or async (aiobotocore's session subclasses
botocore's), gets the recorder's handlers at construction, and every client copies its
session's handlers; independently, the one method every API call goes through
(``_make_api_call``, sync and async) counts calls, and moto's own recorder logs every HTTP
request the server receives. The test checks that the three agree.

moto runs no job: where AWS would run one, a handler on the request's ``after-call`` event
runs it here on the request's own arguments (the "simulated" actor in the log): the Spark job
on local Spark, the tuning job with the local SageMaker runtime, the transform with the local
transform runtime, over a local mirror of the bucket; what the job writes is uploaded where AWS
would have put it. What moto does not implement is answered on ``before-call`` (``stubbed``).

Each task's memory: ``TaskMemory`` measures what each task adds to this process's resident
memory (the outcome's ``task_rss_added_mb`` per run), the figure bench/worker_memory.py compares
between day sizes (``HEADRACE_CONTRACT_ROWS_PER_DAY``). So that it is the task's own, nothing
else holds rows here: moto runs in a process of its own, the landing files are generated in
another, the simulated jobs (Glue Data Quality's Great Expectations run included) are processes,
and the bucket's mirror streams files to and from disk.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "plugins")]

from airflow.listeners import hookimpl  # noqa: E402 (AIRFLOW_HOME comes from the caller)

from tests.aws_fakes import (  # noqa: E402 (the repository root is on sys.path from here on)
    REGION,
    RequestCapture,
    aws_client,
    build_fake_account,
    call_moto_api,
    jsonable,
    start_moto_for_this_process,
)

BUCKET = "headrace-contract-lake"
DAY_1, DAY_2 = "2026-01-05", "2026-01-06"
# Rows per landed day: a few hundred for the contract; bench/worker_memory.py runs the same
# lifecycle at 10k and 500k (HEADRACE_CONTRACT_ROWS_PER_DAY) to see whether a task's memory grows.
ROWS_PER_DAY = int(os.environ.get("HEADRACE_CONTRACT_ROWS_PER_DAY", "300"))
PII_SALT = "contract-test-salt"  # pragma: allowlist secret (a test value, stored in moto)
# MWAA names its environment to the workers in AIRFLOW_ENV_NAME (include/run_note.py).
MWAA_ENVIRONMENT = "headrace-contract"


# --- the record ------------------------------------------------------------------------------

CAPTURE = RequestCapture()


# --- a local mirror of the bucket, where the simulated jobs run --------------------------------


class BucketMirror:
    """``s3://BUCKET/…`` ↔ ``file://ROOT/…``. JSON documents name lake URIs, so their URIs are
    rewritten on the way (a job on AWS would have written s3:// URIs into them)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.s3_prefix = f"s3://{BUCKET}/"
        self.file_prefix = f"file://{root}/"

    def to_local(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.to_local(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.to_local(v) for v in value]
        if isinstance(value, str):
            return value.replace(self.s3_prefix, self.file_prefix)
        return value

    def to_s3(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.to_s3(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.to_s3(v) for v in value]
        if isinstance(value, str):
            return value.replace(self.file_prefix, self.s3_prefix)
        return value

    def _client(self):
        import boto3

        return boto3.client("s3", region_name=REGION)

    def pull(self) -> None:
        """Bring the bucket's objects here (unchanged ones are skipped). Files are streamed, not
        read into memory: this runs inside a task's boto call, whose memory is measured."""
        s3 = self._client()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in page.get("Contents", []):
                path = self.root / item["Key"]
                if path.suffix == ".json":
                    data = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                    data = data.replace(self.s3_prefix.encode(), self.file_prefix.encode())
                    if not path.exists() or path.read_bytes() != data:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(data)
                elif not path.exists() or _etag(path) != item["ETag"]:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(BUCKET, item["Key"], str(path), Config=_streamed())

    def push(self, under: str, kms_key_arn: str) -> list[str]:
        """Upload what a job wrote under ``under`` (new or changed files); their keys."""
        s3 = self._client()
        encryption = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_arn}
        pushed = []
        for path in sorted((self.root / under).rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            key = path.relative_to(self.root).as_posix()
            try:
                etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"]
            except s3.exceptions.ClientError as error:
                # Only a missing object is new; any other error (denied, throttled) must fail.
                if error.response["Error"]["Code"] not in ("404", "NoSuchKey"):
                    raise
                etag = None
            if path.suffix == ".json":
                data = path.read_bytes().replace(self.file_prefix.encode(), self.s3_prefix.encode())
                if etag == f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"':
                    continue
                s3.put_object(Bucket=BUCKET, Key=key, Body=data, **encryption)
            else:
                if etag == _etag(path):
                    continue
                s3.upload_file(str(path), BUCKET, key, ExtraArgs=encryption, Config=_streamed())
            pushed.append(key)
        return pushed


def _streamed():
    """Transfers in one request each, in the calling thread: the capture's actor is per thread
    (the simulator's requests are recorded as ``simulated``), and a multipart upload's ETag is not
    the bytes' MD5."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=2**40, use_threads=False)


def _md5():
    return hashlib.md5(usedforsecurity=False)  # S3's ETag, not a security use


def _etag(path: Path) -> str:
    """The ETag moto gives an object of ``path``'s bytes put in one part: their MD5, quoted."""
    with path.open("rb") as handle:
        return f'"{hashlib.file_digest(handle, _md5).hexdigest()}"'


# --- what AWS would do with the requests moto only stores ---------------------------------------


class SimulatedAws:
    """The jobs behind the requests, run here on the requests' own arguments."""

    def __init__(self, mirror: BucketMirror, work: Path, kms_key_arn: str) -> None:
        self.mirror = mirror
        self.work = work
        self.kms_key_arn = kms_key_arn
        self.spark_runs: list[dict] = []
        self.best_training_jobs: dict[str, dict] = {}
        self.completed_steps: set[str] = set()
        self.rulesets: dict[str, dict] = {}
        self.dq_runs: dict[str, dict] = {}
        self.dq_results: dict[str, dict] = {}
        self.transforms: list[str] = []
        self.processing_jobs: list[str] = []
        self.run_notes: dict[tuple[str, str], str] = {}
        self.run_spark = True
        # The environment of every Spark job after the first that read the PII salt: it keeps
        # the salt, so the features jobs share the ingest jobs' warm driver (a driver serves one
        # environment) as in the local stack, where every job has HEADRACE_PII_SALT. Without it
        # the features jobs started a second JVM.
        self.spark_env: dict[str, str] = {}

    def register(self, capture: RequestCapture) -> None:
        capture.after.update(
            {
                ("glue", "StartJobRun"): self.glue_job_run,
                ("emr-serverless", "StartJobRun"): self.emr_serverless_job_run,
                ("emr", "AddJobFlowSteps"): self.emr_steps,
                ("emr", "DescribeStep"): self.emr_step_state,
                ("sagemaker", "CreateHyperParameterTuningJob"): self.tuning_job,
                ("sagemaker", "DescribeHyperParameterTuningJob"): self.tuning_result,
                ("sagemaker", "CreateTransformJob"): self.transform_job,
                ("sagemaker", "CreateProcessingJob"): self.processing_job,
            }
        )
        # moto implements none of these; each answer is what Glue returns.
        capture.stubs.update(
            {
                ("glue", "CreateSecurityConfiguration"): lambda p: (200, {"Name": p["Name"]}),
                ("glue", "GetDataQualityRuleset"): self.get_ruleset,
                ("glue", "CreateDataQualityRuleset"): self.put_ruleset,
                ("glue", "UpdateDataQualityRuleset"): self.put_ruleset,
                ("glue", "StartDataQualityRulesetEvaluationRun"): self.start_dq_run,
                ("glue", "GetDataQualityRulesetEvaluationRun"): lambda p: (
                    200,
                    self.dq_runs[p["RunId"]],
                ),
                ("glue", "GetDataQualityResult"): lambda p: (200, self.dq_results[p["ResultId"]]),
                # moto has no MWAA API: the run notes' REST calls are answered here.
                ("mwaa", "InvokeRestApi"): self.airflow_rest_api,
            }
        )

    # Spark jobs: Glue, EMR Serverless, EMR steps -------------------------------------------

    def _spark(self, engine: str, script_uri: str, argv: list[str]) -> None:
        job = script_uri.rsplit("/", 1)[-1].removesuffix(".py")
        self.spark_runs.append({"engine": engine, "job": job, "argv": argv})
        if not self.run_spark:
            return
        import subprocess

        from include.local_envs import spark_python
        from include.warm_drivers import job_command, pool_of

        self.mirror.pull()
        local_argv = self.mirror.to_local(argv)
        if "--pii-salt-secret-id" in local_argv:
            # The job's read of its salt secret goes through this process's recorded clients
            # (the capture counts every request moto receives); the job gets the value in its
            # environment, never as an argument.
            import boto3

            at = local_argv.index("--pii-salt-secret-id")
            secret_id = local_argv[at + 1]
            client = boto3.client("secretsmanager", region_name=REGION)
            self.spark_env["HEADRACE_CONTRACT_PII_SALT"] = client.get_secret_value(
                SecretId=secret_id
            )["SecretString"]
            local_argv[at : at + 2] = ["--pii-salt-env", "HEADRACE_CONTRACT_PII_SALT"]
        # HEADRACE_SPARK_QUICK_JIT comes from the environment, as the local runner takes it.
        env = {
            **os.environ,
            "PYSPARK_PYTHON": spark_python(),
            "SPARK_LOCAL_IP": "127.0.0.1",
            **self.spark_env,
        }
        # In the Spark environment (like Glue's), as the service would run it: not this process;
        # in a warm driver, as the local runner starts jobs (include/warm_drivers.py).
        result = subprocess.run(
            job_command(spark_python(), pool_of(self.work), f"spark_jobs.{job}", local_argv),
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = (result.stdout + result.stderr)[-4000:]
        assert result.returncode == 0, f"spark_jobs.{job} exited {result.returncode}:\n{output}"
        self.mirror.push("lake", self.kms_key_arn)

    def glue_job_run(self, params: dict, parsed: dict) -> None:
        import boto3

        job = boto3.client("glue", region_name=REGION).get_job(JobName=params["JobName"])["Job"]
        arguments = {k: v for k, v in params["Arguments"].items() if k != "--headrace-run-key"}
        argv = [item for pair in arguments.items() for item in pair]
        self._spark("glue", job["Command"]["ScriptLocation"], argv)

    def emr_serverless_job_run(self, params: dict, parsed: dict) -> None:
        submit = params["jobDriver"]["sparkSubmit"]
        self._spark("emr_serverless", submit["entryPoint"], submit.get("entryPointArguments", []))

    def emr_steps(self, params: dict, parsed: dict) -> None:
        for step, step_id in zip(params["Steps"], parsed["StepIds"], strict=True):
            args = step["HadoopJarStep"]["Args"]
            script = next(i for i, arg in enumerate(args) if arg.endswith(".py"))
            self._spark("emr_ec2", args[script], args[script + 1 :])
            self.completed_steps.add(step_id)

    def emr_step_state(self, params: dict, parsed: dict) -> None:
        # moto's steps stay RUNNING for ever; this one ran above.
        if params["StepId"] in self.completed_steps:
            parsed["Step"]["Status"]["State"] = "COMPLETED"

    # SageMaker ----------------------------------------------------------------------------

    def tuning_job(self, params: dict, parsed: dict) -> None:
        """Run the tuning job with the local runtime on the request as sent, put the best
        model where SageMaker would, and create that training job as SageMaker's tuner would."""
        import boto3

        from include.local_sagemaker import (
            describe_training_job,
            run_tuning_job,
            trial_training_request,
        )

        self.mirror.pull()
        work_root = self.work / "sagemaker"
        result = run_tuning_job(self.mirror.to_local(params), work_root=work_root)
        best = result["BestTrainingJob"]
        description = describe_training_job(best["TrainingJobName"], work_root=work_root)
        self.mirror.push("lake/models", self.kms_key_arn)
        trial = trial_training_request(
            self.mirror.to_local(params), best["TrainingJobName"], best["TunedHyperParameters"]
        )
        boto3.client("sagemaker", region_name=REGION).create_training_job(
            **self.mirror.to_s3(trial)
        )
        self.best_training_jobs[params["HyperParameterTuningJobName"]] = {
            "best": self.mirror.to_s3(best),
            "counters": result.get("TrainingJobStatusCounters"),
            "local_model": description["ModelArtifacts"]["S3ModelArtifacts"],
        }

    def tuning_result(self, params: dict, parsed: dict) -> None:
        # moto reports a made-up best job ("FakeTrainingJobName"); this is the one that ran.
        found = self.best_training_jobs.get(params["HyperParameterTuningJobName"])
        if found:
            parsed["BestTrainingJob"] = found["best"]
            if found["counters"]:
                parsed["TrainingJobStatusCounters"] = found["counters"]

    def transform_job(self, params: dict, parsed: dict) -> None:
        """Score with the local transform runtime on the request as sent (and the model's
        CreateModel body as sent); upload the .out files where SageMaker writes them."""
        from include.local_transform import run_transform_job

        model = next(
            r["params"]
            for r in reversed(CAPTURE.requests)
            if r["operation"] == "CreateModel" and r["params"]["ModelName"] == params["ModelName"]
        )
        self.mirror.pull()
        run_transform_job(
            self.mirror.to_local(params),
            self.mirror.to_local(model),
            work_root=self.work / "sagemaker",
        )
        self.transforms.append(params["TransformJobName"])
        self.mirror.push("lake/predictions", self.kms_key_arn)

    def processing_job(self, params: dict, parsed: dict) -> None:
        """Run the processing job with the local runtime on the request as sent; upload its
        outputs where SageMaker would (moto stores the job and reports it Completed)."""
        from include.local_processing import start_processing_job, wait_for_processing_job

        self.mirror.pull()
        work_root = self.work / "sagemaker"
        start_processing_job(self.mirror.to_local(params), work_root=work_root)
        job = wait_for_processing_job(params["ProcessingJobName"], work_root=work_root)
        self.processing_jobs.append(params["ProcessingJobName"])
        for output in job["ProcessingOutputConfig"]["Outputs"]:
            under = output["S3Output"]["S3Uri"].removeprefix(self.mirror.file_prefix)
            self.mirror.push(under, self.kms_key_arn)

    # Glue Data Quality --------------------------------------------------------------------

    # MWAA's Airflow REST API: the run notes ----------------------------------------------------

    def airflow_rest_api(self, params: dict):
        """The two calls include/run_note.py makes, as Airflow 3.3's API answers them: the
        environment is the one the DAGs run in, the PATCH body is checked with Airflow's own
        model, and a note is kept per (dag_id, run_id) for the outcome. The run a task names is
        its own run, so it is listed as existing."""
        from airflow.api_fastapi.core_api.datamodels.common import BulkBody
        from airflow.api_fastapi.core_api.datamodels.dag_run import BulkDAGRunBody

        if params["Name"] != MWAA_ENVIRONMENT or params["Path"] != "/dags/~/dagRuns":
            return 404, {"Error": {"Code": "ResourceNotFoundException", "Message": str(params)}}
        if params["Method"] == "GET":
            query = params["QueryParameters"]
            key = (query["dag_id_pattern"], query["run_id_pattern"])
            run = {"dag_id": key[0], "dag_run_id": key[1], "note": self.run_notes.get(key)}
            return 200, {"RestApiStatusCode": 200, "RestApiResponse": {"dag_runs": [run]}}
        (action,) = BulkBody[BulkDAGRunBody].model_validate(params["Body"]).actions
        success = []
        for entity in action.entities:
            self.run_notes[(entity.dag_id, entity.dag_run_id)] = entity.note
            success.append(f"{entity.dag_id}.{entity.dag_run_id}")
        answer = {"update": {"success": success, "errors": []}}
        return 200, {"RestApiStatusCode": 200, "RestApiResponse": answer}

    def get_ruleset(self, params: dict):
        if params["Name"] not in self.rulesets:
            return 400, {"Error": {"Code": "EntityNotFoundException", "Message": "no ruleset"}}
        return 200, self.rulesets[params["Name"]]

    def put_ruleset(self, params: dict):
        self.rulesets[params["Name"]] = {**self.rulesets.get(params["Name"], {}), **params}
        return 200, {"Name": params["Name"]}

    def start_dq_run(self, params: dict):
        """Evaluate the rulesets as Glue would: each DQDL rule's outcome is the local engine's
        (Great Expectations) outcome of the same rule on the same partition."""
        from include import local_quality
        from include.dq.dqdl import compile_rulesets
        from include.dq.gate import DATASETS_DIR, load_dataset_rules, resolved_rules_for
        from include.dq.results import GateResult

        run_id = "dqrun-" + hashlib.sha256(params["ClientToken"].encode()).hexdigest()[:12]
        if run_id in self.dq_runs:  # the same ClientToken: Glue returns the first run
            return 200, {"RunId": run_id}
        table = params["DataSource"]["GlueTable"]["TableName"]
        dataset = table.removesuffix("_curated")
        ds = params["DataSource"]["GlueTable"]["AdditionalOptions"]["pushDownPredicate"]
        ds = ds.split("'")[1]
        self.mirror.pull()
        rule_set = load_dataset_rules(dataset)
        local_lake = f"{self.mirror.file_prefix}lake"
        # Great Expectations in a job process of its own (the local quality job), as Glue runs
        # the rules off the worker: this runs inside the task's call, whose memory is measured.
        local_quality.start_or_attach(
            run_id, dataset=dataset, ds=ds, rules_dir=DATASETS_DIR, lake_root=local_lake,
            max_runtime_s=600,
        )  # fmt: skip
        result = GateResult.from_dict(local_quality.wait_for_result(run_id, timeout=600))
        outcomes = {o.rule: o for o in result.outcomes}
        compiled = compile_rulesets(resolved_rules_for(rule_set, local_lake, ds))
        result_ids = []
        for name in params["RulesetNames"]:
            severity = name.rsplit("-", 1)[-1]
            ruleset = compiled[severity]
            assert self.rulesets[name]["Ruleset"] == ruleset.text, f"{name} differs"
            result_id = f"dqresult-{run_id}-{severity}"
            self.dq_results[result_id] = {
                "ResultId": result_id,
                "RulesetName": name,
                "RuleResults": [
                    {
                        "Name": f"Rule_{number}",
                        "Description": line,
                        "Result": "FAIL" if outcomes[rule_id].status == "fail" else "PASS",
                        "EvaluationMessage": outcomes[rule_id].detail or "",
                    }
                    for number, (line, rule_id) in enumerate(ruleset.lines, start=1)
                ],
            }
            result_ids.append(result_id)
        self.dq_runs[run_id] = {"RunId": run_id, "Status": "SUCCEEDED", "ResultIds": result_ids}
        return 200, {"RunId": run_id}


# --- the environment -------------------------------------------------------------------------


def start_moto_and_configure(engine: str, recording: Path, local_runs: Path):
    """A moto server recording what it receives, the aws settings, and what a deployment has
    made before the DAGs run: the fake account (tests/aws_fakes.py) with the salt secret, alerts
    topic and ``engine``'s resources, and the dataset spec. ``local_runs`` is where the simulated
    Glue Data Quality runs' jobs keep their folders."""
    os.environ["MOTO_RECORDER_FILEPATH"] = str(recording)  # read by the server's process
    server = start_moto_for_this_process()
    call_moto_api(server.endpoint, "recorder/reset-recording")
    call_moto_api(server.endpoint, "recorder/start-recording")
    account = build_fake_account(BUCKET, engine=engine, pii_salt=PII_SALT, alerts_topic=True)
    # The dataset spec ships beside the job code (make deploy); the jobs read it from S3.
    aws_client("s3").put_object(
        Bucket=BUCKET,
        Key="artifacts/datasets/churn.yaml",
        Body=(REPO_ROOT / "include" / "datasets" / "churn.yaml").read_bytes(),
    )
    settings = {
        **account.settings,
        "AIRFLOW_ENV_NAME": MWAA_ENVIRONMENT,
        # Tiny jobs on a small machine; the request bodies keep their production shape.
        "HEADRACE_SPARK_DRIVER_MEMORY": "1g",
        "HEADRACE_SPARK_LOG_LEVEL": "ERROR",
        "HEADRACE_LOCAL_RUNS_DIR": str(local_runs),
    }
    os.environ.update(settings)
    env = {"kms_key_arn": account.kms_key_arn, "topic_arn": account.topic_arn, **settings}
    return server, env


def land_churn_days(mirror: BucketMirror, kms_key_arn: str) -> None:
    """Two days of churn landing files, put in the landing zone as the producer does. The second
    day's ``minutes_used`` drifts: a ``warn`` rule of the gate, so it passes the gate and is left
    for the drift check to find. Generated in a process of its own: the rows never pass through
    this one's memory."""
    import subprocess

    landing = mirror.root / "lake" / "landing"
    subprocess.run(
        [sys.executable, "-m", "include.datagen.churn", "--out", str(landing), "--start", DAY_1,
         "--days", "2", "--seed", "11", "--rows-per-day", str(ROWS_PER_DAY),
         "--drift-day", DAY_2, "--drift-features", "minutes_used", "--drift-strength", "2.0"],
        cwd=REPO_ROOT, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    mirror.push("lake/landing", kms_key_arn)


# --- each task's memory ----------------------------------------------------------------------


class TaskMemory:
    """How much each task adds to the resident memory of the process that runs it (the worker's,
    for ``dag.test()``), in MB: an Airflow listener, when a task starts or resumes from a
    deferral, returns the process's free heap to the system (``gc.collect``, ``malloc_trim``),
    notes its resident size and resets the kernel's high-water mark (``VmHWM``, by writing 5 to
    ``/proc/self/clear_refs``); when the task ends or defers again, the task's figure is the
    high-water mark less that start. The moto server, the jobs and the Great Expectations run are
    processes of their own, and what the simulator does in this process streams: a task's figure
    grows with the rows only if the task itself holds rows. After each collection the surviving
    objects are frozen (``gc.freeze``), so the next one looks only at what the tasks since made:
    a full collection of this process's heap took about 0.5 s, 24.7 s over the 47 task starts of
    the Glue lifecycle. Frozen garbage is never freed, so it cannot lower a later task's figure.

    Not the process's peak itself: tasks run here one after another in one process, whose size
    at a task's start depends on every task before it (imports, caches) by tens of MB from run to
    run; on MWAA each task has a process of its own."""

    def __init__(self) -> None:
        self.added: dict[str, float] = {}
        self._open: tuple[str, int] | None = None
        self._libc = ctypes.CDLL("libc.so.6")

    @staticmethod
    def _status_kb(field: str) -> int:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith(f"{field}:"))
        return int(line.split()[1])

    def _close(self) -> None:
        if self._open is not None:
            task_id, start_kb = self._open
            added = (self._status_kb("VmHWM") - start_kb) / 1024
            self.added[task_id] = round(max(added, self.added.get(task_id, 0.0)), 1)
            self._open = None

    @hookimpl
    def on_task_instance_running(self, previous_state, task_instance) -> None:
        self._close()  # a deferral ends the running part without a hook
        gc.collect()
        gc.freeze()
        self._libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        self._open = (task_instance.task_id, self._status_kb("VmRSS"))

    @hookimpl
    def on_task_instance_success(self, previous_state, task_instance) -> None:
        self._close()

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error) -> None:
        self._close()

    @hookimpl
    def on_task_instance_skipped(self, previous_state, task_instance) -> None:
        self._close()

    def take(self) -> dict[str, float]:
        """The figures measured since the last call (one DAG run's)."""
        self._close()
        added, self.added = self.added, {}
        return added


TASK_MEMORY = TaskMemory()


# --- the lifecycle ---------------------------------------------------------------------------


def run_dag(bag, dag_id: str, conf: dict, outcome: dict, expect: str = "success") -> dict:
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise RuntimeError(f"no DAG {dag_id} in dags/; import errors: {list(bag.import_errors)}")
    CAPTURE.actor = f"dag:{dag_id}"
    first_request = len(CAPTURE.requests)
    TASK_MEMORY.take()  # nothing of an earlier run
    try:
        dag_run = dag.test(run_conf=conf)
    finally:
        CAPTURE.actor = "setup"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    run = {
        "dag_id": dag_id,
        "run_id": dag_run.run_id,
        "conf": conf,
        "state": str(dag_run.state),
        "tasks": {task_id: str(ti.state) for task_id, ti in tis.items()},
        "xcom": {task_id: jsonable(ti.xcom_pull(task_ids=task_id)) for task_id, ti in tis.items()},
        # What each task added to its process's resident memory at its peak, MB (TaskMemory).
        "task_rss_added_mb": TASK_MEMORY.take(),
        # The run's requests: outcome["requests"][start:end] (the log's order).
        "requests": [first_request, len(CAPTURE.requests)],
    }
    outcome["runs"].append(run)
    if run["state"] != expect:
        raise RuntimeError(f"{dag_id} run ended {run['state']}, not {expect}: {run['tasks']}")
    return run


def main(engine: str, log_path: Path, dags_folder: Path = REPO_ROOT / "dags") -> dict:
    CAPTURE.install()
    work = Path(tempfile.mkdtemp(prefix="headrace-contract-"))
    server, env = start_moto_and_configure(
        engine, work / "moto-recording.jsonl", work / "local_runs"
    )
    mirror = BucketMirror(work / "bucket")
    simulated = SimulatedAws(mirror, work, env["kms_key_arn"])
    simulated.register(CAPTURE)
    # EMR engines run ingestion only: no downstream stage reads what the job would write.
    simulated.run_spark = engine == "glue"
    outcome: dict[str, Any] = {"engine": engine, "runs": [], "settings": env}
    try:
        with CAPTURE.simulating():
            land_churn_days(mirror, env["kms_key_arn"])

        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
        from airflow.sdk.listener import get_listener_manager

        get_listener_manager().add_listener(TASK_MEMORY)

        # The whole dags/ folder, as the dag-processor parses it; DAGs are found by id.
        bag = DagBag(dag_folder=str(dags_folder))
        outcome["import_errors"] = {k: v[-500:] for k, v in bag.import_errors.items()}
        DagBundlesManager().sync_bundles_to_db()
        sync_bag_to_db(bag, "dags-folder", None)

        run_dag(bag, "lake_setup", {}, outcome)
        run_dag(bag, "churn_ingestion", {"ds": DAY_1}, outcome)
        if engine == "glue":
            run_dag(bag, "churn_validation", {"ds": DAY_1}, outcome)
            run_dag(bag, "churn_ingestion", {"ds": DAY_2}, outcome)
            run_dag(bag, "churn_validation", {"ds": DAY_2}, outcome)
            tiny = {"ds": DAY_1, "max_trials": 1, "parallel_trials": 1, "epochs": 2}
            # Three trials at once need three instances, over the quota of two: refused before
            # any job, by training_cause.
            over_quota = {**tiny, "max_trials": 3, "parallel_trials": 3}
            run_dag(bag, "churn_training", over_quota, outcome, expect="failed")
            run_dag(bag, "churn_training", tiny, outcome)
            # Another model (more epochs: the same hyperparameters on the same data and code would
            # reproduce version 1, not register a version) on the same data cannot beat the
            # champion by 0.2 on the same test rows: it waits for a person.
            second = run_dag(
                bag, "churn_training", {**tiny, "epochs": 3, "approval_margin": 0.2}, outcome
            )
            # The drift event of DAY_1 after its features event trained it: the same window,
            # code and parameters as the first run, so it stops before any job starts.
            run_dag(bag, "churn_training", tiny, outcome)
            version = int(second["xcom"]["register_model"]["version"])
            # The approval DAG waits for a person (a human-in-the-loop task), which dag.test()
            # cannot answer: the answer is recorded as its record_decision task records it.
            from include.registry import record_approval_response

            CAPTURE.actor = "dag:churn_model_approval"  # its record_decision task's call
            outcome["approval"] = record_approval_response(
                "churn",
                str(version),
                {
                    "chosen_options": ["Approve"],
                    "params_input": {"reason": "the contract suite approves the challenger"},
                    "responded_by_user": {"id": "contract-test", "name": "contract-test"},
                },
            )
            CAPTURE.actor = "setup"
            run_dag(bag, "churn_scoring", {"ds": DAY_2}, outcome)
            run_dag(bag, "churn_monitoring", {"ds": DAY_2}, outcome)
    except Exception as error:  # reported in the outcome; the test names it
        import traceback

        outcome["error"] = f"{type(error).__name__}: {error}\n{traceback.format_exc()[-6000:]}"
    finally:
        call_moto_api(server.endpoint, "recorder/stop-recording")
        server.stop()
        from include.warm_drivers import pool_of, stop_drivers

        stop_drivers(pool_of(work))

    with open(log_path, "w") as log:
        for request in CAPTURE.requests:
            log.write(json.dumps(request, sort_keys=True) + "\n")
    received = [
        json.loads(line)
        for line in (work / "moto-recording.jsonl").read_text().splitlines()
        if line.strip()
    ]
    outcome["capture"] = {
        "sessions_hooked": CAPTURE.sessions_hooked,
        "clients_created": CAPTURE.clients_created,
        "api_calls": len(CAPTURE.api_calls),
        "api_call_sequence": [f"{s}:{o}" for s, o in CAPTURE.api_calls],
        "recorded": len(CAPTURE.requests),
        "recorded_sequence": [f"{r['service']}:{r['operation']}" for r in CAPTURE.requests],
        "stubbed": sum(r["stubbed"] for r in CAPTURE.requests),
        "moto_received": len(received),
    }
    outcome["run_notes"] = [
        {"dag_id": dag_id, "run_id": run_id, "note": note}
        for (dag_id, run_id), note in simulated.run_notes.items()
    ]
    outcome["simulated"] = {
        "spark_runs": simulated.spark_runs,
        "transforms": simulated.transforms,
        "tuning": {
            k: v["best"]["TrainingJobName"] for k, v in simulated.best_training_jobs.items()
        },
    }
    if "error" not in outcome:  # a failed lifecycle keeps its folder to look into
        shutil.rmtree(work, ignore_errors=True)
    return outcome


if __name__ == "__main__":
    result = main(sys.argv[1], Path(sys.argv[2]), *(Path(arg) for arg in sys.argv[3:4]))
    print("OUTCOME " + json.dumps(result, sort_keys=True, default=str))
