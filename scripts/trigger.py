"""Trigger a DAG run or post an asset event through the Airflow 3 REST API, from outside Airflow.

What a Lambda function, a CI job or a person at a shell calls. Standard library only.

    python scripts/trigger.py dag churn_training -p max_trials=8 -p ds=2026-01-07 --wait
    python scripts/trigger.py asset churn_drift --extra '{"ds": "2026-01-07"}'

Credentials never go on the command line: ``AIRFLOW_API_TOKEN`` (a token issued beforehand), or
a username (``AIRFLOW_API_USERNAME``, default ``admin``) with its password from
``AIRFLOW_API_PASSWORD`` or ``--password-file`` (a file holding the password, or the simple auth
manager's passwords JSON, e.g. ``.local/airflow/passwords.json``), exchanged for a token at
``POST /auth/token``. The API is ``AIRFLOW_API_URL`` (default ``http://127.0.0.1:8080``).

On success the run id (or the asset event id) is the only line on stdout; everything else goes
to stderr. The exit status says what a caller should do next (see ``EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
from pathlib import Path

from airflow_api import REQUEST_TIMEOUT_S, AirflowApi, AirflowApiError

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_USERNAME = "admin"

OK = 0
RUN_FAILED = 1  # --wait: the run ended in failure
USAGE = 2  # bad arguments (argparse's own status)
AUTH_REFUSED = 3  # no credentials, or the API refused them (401/403): fix the credentials
REQUEST_REFUSED = 4  # the API refused the request (400/404/409/422): fix the input, do not retry
UNAVAILABLE = 5  # the API failed (5xx) or could not be reached: retrying later may work
WAIT_TIMED_OUT = 6  # --wait: the run was still going when the wait ended

EXIT_CODES = {
    OK: "triggered (with --wait: the run succeeded)",
    RUN_FAILED: "--wait: the run failed",
    USAGE: "bad arguments",
    AUTH_REFUSED: "no credentials, or the API refused them (HTTP 401/403)",
    REQUEST_REFUSED: "the API refused the request (HTTP 400/404/409/422); the message names the field",
    UNAVAILABLE: "the API failed (HTTP 5xx) or could not be reached; retry later",
    WAIT_TIMED_OUT: "--wait: the run had not finished in time",
}


class CliError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _json_object(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise CliError(USAGE, f"{what} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise CliError(USAGE, f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _param(text: str) -> tuple[str, object]:
    """``KEY=VALUE``; the value is JSON when it parses as JSON (3, 0.01, true, null), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _password(args) -> str | None:
    if args.password_file:
        path = Path(args.password_file)
        try:
            text = path.read_text().strip()
        except OSError as error:
            raise CliError(AUTH_REFUSED, f"cannot read the password file {path}: {error}") from None
        if text.startswith("{"):
            # The simple auth manager's passwords file: {"username": "password", ...}.
            passwords = _json_object(text, f"password file {path}")
            if args.username not in passwords:
                raise CliError(AUTH_REFUSED, f"{path} has no password for user {args.username!r}")
            return passwords[args.username]
        return text
    return os.environ.get("AIRFLOW_API_PASSWORD")


def _api(args) -> AirflowApi:
    token = os.environ.get("AIRFLOW_API_TOKEN")
    if token:
        return AirflowApi(args.url, token=token, timeout=args.timeout)
    password = _password(args)
    if password is None:
        raise CliError(
            AUTH_REFUSED,
            "no credentials: set AIRFLOW_API_TOKEN, or AIRFLOW_API_PASSWORD, or pass --password-file",
        )
    return AirflowApi(args.url, args.username, password, timeout=args.timeout)


def _conf(args) -> dict:
    conf: dict = {}
    if args.conf_file:
        conf.update(_json_object(Path(args.conf_file).read_text(), f"--conf-file {args.conf_file}"))
    if args.conf:
        conf.update(_json_object(args.conf, "--conf"))
    conf.update(dict(args.param))
    return conf


def trigger_dag(args) -> int:
    api = _api(args)
    run = api.trigger_run(
        args.dag_id,
        _conf(args),
        logical_date=args.logical_date,
        run_id=args.run_id,
        note=args.note,
        partition_key=args.partition_key,
    )
    run_id = run["dag_run_id"]
    print(json.dumps(run) if args.json else run_id, flush=True)
    print(f"trigger: {args.dag_id} run {run_id} created ({run['state']})", file=sys.stderr)
    if not args.wait:
        return OK
    if api.get(f"/api/v2/dags/{args.dag_id}")["is_paused"]:
        print(
            f"trigger: {args.dag_id} is paused: the run waits in the queue until it is unpaused",
            file=sys.stderr,
        )
    try:
        final = api.wait_for_run(args.dag_id, run_id, args.wait_timeout, args.poll_interval)
    except TimeoutError as error:
        raise CliError(WAIT_TIMED_OUT, str(error)) from None
    print(f"trigger: {args.dag_id} run {run_id} finished: {final['state']}", file=sys.stderr)
    return OK if final["state"] == "success" else RUN_FAILED


def post_asset_event(args) -> int:
    api = _api(args)
    try:
        asset = api.asset(args.asset)
    except LookupError as error:
        raise CliError(REQUEST_REFUSED, str(error)) from None
    extra = _json_object(args.extra, "--extra") if args.extra else {}
    event = api.post_asset_event(asset["id"], extra, partition_key=args.partition_key)
    print(json.dumps(event) if args.json else event["id"], flush=True)
    print(
        f"trigger: event {event['id']} posted on asset {asset['name']} ({asset['uri']}); "
        "the scheduler starts the DAGs scheduled on it",
        file=sys.stderr,
    )
    return OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trigger.py",
        description=__doc__.splitlines()[0],
        epilog="exit status: "
        + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()),
    )
    parser.add_argument(
        "--url", default=os.environ.get("AIRFLOW_API_URL", DEFAULT_URL), help="the API's base URL"
    )
    parser.add_argument(
        "--username",
        default=os.environ.get("AIRFLOW_API_USERNAME", DEFAULT_USERNAME),
        help="user to log in as when no AIRFLOW_API_TOKEN is set",
    )
    parser.add_argument(
        "--password-file", help="file with the user's password (or a simple auth manager JSON)"
    )
    parser.add_argument(
        "--timeout", type=float, default=REQUEST_TIMEOUT_S, help="seconds per HTTP request"
    )
    parser.add_argument("--json", action="store_true", help="print the whole API response")
    commands = parser.add_subparsers(dest="command", required=True)

    dag = commands.add_parser("dag", help="trigger a DAG run: POST /api/v2/dags/{dag_id}/dagRuns")
    dag.add_argument("dag_id")
    dag.add_argument("--conf", help="the run's conf as a JSON object")
    dag.add_argument("--conf-file", help="file with the run's conf as a JSON object")
    dag.add_argument(
        "-p",
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="KEY=VALUE",
        help="one conf key (repeatable; applied after --conf-file and --conf)",
    )
    dag.add_argument(
        "--logical-date", help="ISO 8601 with a time zone; default: a run with no logical date"
    )
    dag.add_argument("--run-id", help="the run id; default: Airflow makes one")
    dag.add_argument("--note", help="a note shown on the run in the UI")
    dag.add_argument("--partition-key", help="the day (YYYY-MM-DD) a per-day DAG's run works on")
    dag.add_argument("--wait", action="store_true", help="follow the run until it finishes")
    dag.add_argument(
        "--wait-timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)"
    )
    dag.add_argument("--poll-interval", type=float, default=5.0, help="seconds between polls")
    dag.set_defaults(handler=trigger_dag)

    asset = commands.add_parser("asset", help="post an asset event: POST /api/v2/assets/events")
    asset.add_argument("asset", help="the asset's name or URI")
    asset.add_argument("--extra", help="the event's extra as a JSON object")
    asset.add_argument(
        "--partition-key",
        help="the day (YYYY-MM-DD) the event is for: the per-day DAGs scheduled on the asset run "
        "once for it (without it, they do not run)",
    )
    asset.set_defaults(handler=post_asset_event)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CliError as error:
        print(f"trigger: {error}", file=sys.stderr)
        return error.status
    except AirflowApiError as error:
        print(f"trigger: {error}", file=sys.stderr)
        if error.status in (401, 403):
            return AUTH_REFUSED
        return UNAVAILABLE if error.status >= 500 else REQUEST_REFUSED
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        print(f"trigger: cannot reach the Airflow API at {args.url}: {reason}", file=sys.stderr)
        return UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
