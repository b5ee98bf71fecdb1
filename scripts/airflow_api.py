"""A small client of the Airflow 3 REST API (/api/v2), standard library only.

Used by ``make demo``, ``scripts/trigger.py`` and the end-to-end tests to drive the real
scheduler the way a person in the UI or an external system would: authenticate, unpause,
trigger, post asset events, wait, read task states.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

TERMINAL_RUN_STATES = {"success", "failed"}


def error_detail(body: str) -> str:
    """The API's reason for refusing a request, readable in one line: FastAPI's ``detail`` (a
    message, or pydantic's list of errors, each with the field it is about), else the body."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', []))}: {error.get('msg')}"
            if isinstance(error, dict)
            else str(error)
            for error in detail
        )
    return detail if isinstance(detail, str) else json.dumps(detail)


class AirflowApiError(RuntimeError):
    def __init__(self, method: str, url: str, status: int, body: str):
        self.status = status
        self.body = body
        self.detail = error_detail(body)
        super().__init__(f"{method} {url} -> HTTP {status}: {self.detail}")

    @property
    def is_database_error(self) -> bool:
        """HTTP 500 for a SQLAlchemy error (the detail's reason "Database error"): the request's
        transaction was rolled back."""
        try:
            detail = json.loads(self.body).get("detail")
        except (ValueError, AttributeError):
            return False
        return (
            self.status == 500
            and isinstance(detail, dict)
            and detail.get("reason") == "Database error"
        )


# Seconds between two looks at a run that is being waited for: each wait ends up to this much
# after the run did, and a local run's stages are seconds long (a look is one small GET).
POLL_S = 0.5
# Seconds a request may take: above the local stack's SQLite lock waits (30 s, the API server's
# 5 s: scripts/airflow_stack.py), so that a request held by one gets the server's answer, not a
# timeout.
REQUEST_TIMEOUT_S = 60.0
# How many times a request is sent in all while it is answered HTTP 500 "Database error"
# (AirflowApiError.is_database_error: its transaction was rolled back). On the local stack it is
# SQLite's "database is locked" after the API server's 5 s lock wait, which Airflow 3.3.1 can
# cause itself (API_SERVER_LOCK_WAIT_S in scripts/airflow_stack.py says how). Six sends 0.5 s
# apart wait out a lock held by another component for up to 32.5 s, as the server's single 30 s
# wait did before it was shortened.
DATABASE_ERROR_ATTEMPTS = 6


class AirflowApi:
    """The API as one user: ``username`` and ``password`` get a token from ``POST /auth/token``
    (the simple auth manager's), or ``token`` is a token issued beforehand and used as is."""

    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
        *,
        token: str | None = None,
    ):
        if token is None and (username is None or password is None):
            raise ValueError("AirflowApi needs a token, or a username and a password")
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._timeout = timeout
        self._token: str | None = token

    def _token_value(self) -> str:
        if self._token is None:
            # The simple auth manager issues a JWT for a username and password.
            body = {"username": self._username, "password": self._password}
            self._token = self._send("POST", "/auth/token", body, auth=False)["access_token"]
        return self._token

    def _send(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        url = f"{self.base_url}{path}"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token_value()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        for attempt in range(1, DATABASE_ERROR_ATTEMPTS + 1):
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                    payload = response.read()
                return json.loads(payload) if payload else None
            except urllib.error.HTTPError as http_error:
                body = http_error.read().decode(errors="replace")
                error = AirflowApiError(method, url, http_error.code, body)
            if attempt == DATABASE_ERROR_ATTEMPTS or not error.is_database_error:
                raise error from None
            time.sleep(0.5)

    def get(self, path: str, **query):
        suffix = f"?{urllib.parse.urlencode(query, doseq=True)}" if query else ""
        return self._send("GET", f"{path}{suffix}")

    def post(self, path: str, body: dict):
        return self._send("POST", path, body)

    def patch(self, path: str, body: dict):
        return self._send("PATCH", path, body)

    def delete(self, path: str):
        return self._send("DELETE", path)

    # --- what the demo and the tests do ------------------------------------------------------

    def import_errors(self) -> list[dict]:
        return self.get("/api/v2/importErrors")["import_errors"]

    def dag_ids(self) -> set[str]:
        return {dag["dag_id"] for dag in self.get("/api/v2/dags", limit=1000)["dags"]}

    def wait_for_dags(self, dag_ids: set[str], timeout: float = 120.0) -> None:
        """Wait until the dag-processor has parsed every DAG in ``dag_ids``."""
        deadline = time.monotonic() + timeout
        while not dag_ids <= (seen := self.dag_ids()):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"DAGs not parsed after {timeout:.0f}s: {sorted(dag_ids - seen)}"
                )
            time.sleep(2)

    def unpause(self, dag_id: str) -> None:
        self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": True})

    def trigger(self, dag_id: str, conf: dict | None = None, **options) -> str:
        """Trigger ``dag_id`` and return the new run's id (see :meth:`trigger_run`)."""
        return self.trigger_run(dag_id, conf, **options)["dag_run_id"]

    def trigger_run(
        self,
        dag_id: str,
        conf: dict | None = None,
        *,
        logical_date: str | None = None,
        run_id: str | None = None,
        note: str | None = None,
        partition_key: str | None = None,
    ) -> dict:
        """``POST /api/v2/dags/{dag_id}/dagRuns``: the created run. Airflow 3 requires the
        ``logical_date`` key; None means a run with no logical date (the usual manual run).
        ``partition_key``: the day (or version) a per-partition DAG's run works on."""
        body: dict = {"logical_date": logical_date, "conf": conf or {}}
        if run_id is not None:
            body["dag_run_id"] = run_id
        if partition_key is not None:
            body["partition_key"] = partition_key
        if note is not None:
            body["note"] = note
        return self.post(f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}/dagRuns", body)

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        quoted = urllib.parse.quote(run_id, safe="")
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quoted}")

    def asset(self, name_or_uri: str) -> dict:
        """The asset whose name or URI is exactly ``name_or_uri`` (the API's filters match
        substrings, so the exact match is picked here)."""
        found = {}
        for query in ("name_pattern", "uri_pattern"):
            for asset in self.get("/api/v2/assets", **{query: name_or_uri, "limit": 100})["assets"]:
                if name_or_uri in (asset["name"], asset["uri"]):
                    found[asset["id"]] = asset
        if len(found) != 1:
            problem = "no asset" if not found else f"{len(found)} assets"
            raise LookupError(f"{problem} named {name_or_uri!r} (by name or URI)")
        return next(iter(found.values()))

    def post_asset_event(
        self, asset_id: int, extra: dict | None = None, partition_key: str | None = None
    ) -> dict:
        """``POST /api/v2/assets/events``: the created event (the scheduler then creates the runs
        of the DAGs scheduled on the asset). The per-day DAGs are scheduled per partition: their
        assets' events need the day as ``partition_key`` (the version, for approvals)."""
        body: dict = {"asset_id": asset_id, "extra": extra or {}}
        if partition_key is not None:
            body["partition_key"] = partition_key
        return self.post("/api/v2/assets/events", body)

    def asset_events(self, settle_timeout: float = 120.0, **filters) -> list[dict]:
        """``GET /api/v2/assets/events`` with ``filters`` (e.g. ``source_run_id``, ``asset_id``),
        through the Airflow 3.3.1 bug below."""
        return self._read_asset_events("/api/v2/assets/events", settle_timeout, **filters)

    def upstream_asset_events(
        self, dag_id: str, run_id: str, settle_timeout: float = 120.0
    ) -> list[dict]:
        """The asset events that created run ``run_id`` of ``dag_id``."""
        quoted = urllib.parse.quote(run_id, safe="")
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/upstreamAssetEvents"
        return self._read_asset_events(path, settle_timeout)

    def _read_asset_events(self, path: str, settle_timeout: float, **query) -> list[dict]:
        # Airflow 3.3.1 answers HTTP 500 while any run an event created is still queued: the
        # response model requires the run's start_date, which a queued run does not have yet
        # (apache/airflow#71360, fixed by #71379 after 3.3.1). Such a run starts within
        # seconds on a running scheduler, so the read is retried until then; any other error,
        # or a 500 that outlasts ``settle_timeout``, is raised.
        deadline = time.monotonic() + settle_timeout
        while True:
            try:
                return self.get(path, **query)["asset_events"]
            except AirflowApiError as error:
                if error.status != 500 or time.monotonic() > deadline:
                    raise
            time.sleep(1)

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns", limit=100)["dag_runs"]

    def wait_for_new_run(self, dag_id: str, known_run_ids: set[str], timeout: float) -> str | None:
        """The id of a run of ``dag_id`` not in ``known_run_ids`` (e.g. one the scheduler just
        created), or None if none appears within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = [run for run in self.dag_runs(dag_id) if run["dag_run_id"] not in known_run_ids]
            if new:
                return new[0]["dag_run_id"]
            time.sleep(POLL_S)
        return None

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 600.0, poll_interval: float = POLL_S
    ) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                run = self.dag_run(dag_id, run_id)
            except TimeoutError:
                # A look is a read, so one the server did not answer in time is only a missed
                # look: the wait looks again until its own deadline. Seen in CI when the machine ran
                # the suite three times slower than usual: the local API server answered nothing
                # for 60 s while two tasks started, and the lake setup's wait ended on that look.
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{dag_id} run {run_id}: the API server did not answer a look in "
                        f"{self._timeout:g}s at the end of the {timeout:g}s wait"
                    ) from None
                continue
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s"
                )
            time.sleep(poll_interval)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        quoted = urllib.parse.quote(run_id, safe="")
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        quoted = urllib.parse.quote(run_id, safe="")
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.get(path)["value"]
