"""A small client of the Airflow 3 REST API (/api/v2), standard library only.

Used by ``make demo`` and the end-to-end tests to drive the real scheduler the way a person in
the UI or an external system would: authenticate, unpause, trigger, wait, read task states.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

TERMINAL_RUN_STATES = {"success", "failed"}


class AirflowApiError(RuntimeError):
    def __init__(self, method: str, url: str, status: int, body: str):
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._timeout = timeout
        self._token: str | None = None

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
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise AirflowApiError(
                method, url, error.code, error.read().decode(errors="replace")
            ) from None
        return json.loads(payload) if payload else None

    def get(self, path: str, **query):
        suffix = f"?{urllib.parse.urlencode(query, doseq=True)}" if query else ""
        return self._send("GET", f"{path}{suffix}")

    def post(self, path: str, body: dict):
        return self._send("POST", path, body)

    def patch(self, path: str, body: dict):
        return self._send("PATCH", path, body)

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

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.post(
            f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
        )
        return run["dag_run_id"]

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
            time.sleep(2)
        return None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600.0) -> dict:
        deadline = time.monotonic() + timeout
        quoted = urllib.parse.quote(run_id, safe="")
        while True:
            run = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quoted}")
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s"
                )
            time.sleep(2)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        quoted = urllib.parse.quote(run_id, safe="")
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        quoted = urllib.parse.quote(run_id, safe="")
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.get(path)["value"]
