"""The local registry: real MLflow on a SQLite file in a temporary models zone, no server.

Also the lineage helpers (code and data versions) and the two pipeline entry points,
``register_trained_model`` and ``approve_pending_version``, end to end on the local lake.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from include.registry import (
    APPROVED,
    PENDING,
    REJECTED,
    MLflowModelRegistry,
    RegistryError,
    approve_pending_version,
    code_version,
    data_version,
    register_trained_model,
    registered_model_name,
)
from training.evaluation import evaluate_binary_classifier, group_metrics, permutation_importance

# Slow (starts MLflow): left out of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models_zone(tmp_path_factory) -> str:
    return (tmp_path_factory.mktemp("lake") / "models").as_uri()


@pytest.fixture(scope="module")
def registry(models_zone) -> MLflowModelRegistry:
    # One SQLite registry for the module (creating MLflow's schema takes seconds); each test
    # uses its own dataset name, so versions never mix.
    return MLflowModelRegistry(models_zone)


def _register(registry, dataset, *, auc, approval, model="m1", reason=""):
    return registry.register_version(
        dataset,
        model_uri=f"file:///lake/models/{dataset}/{model}/model.tar.gz",
        metrics={"roc_auc": auc, "f1": 0.5, "calibration_ece": None},
        data_version="file:///lake/features/x/ds=2026-01-07/_manifest.json@sha256:ab",
        code_version="tree:1234",
        hyperparameters={"epochs": 3, "id-columns": "customer_id,snapshot_date"},
        baseline_uri="file:///lake/monitoring/x/baseline",
        evaluation_uri=f"file:///lake/models/{dataset}/{model}/evaluation.json",
        approval=approval,
        approval_reason=reason,
    )


def test_registered_version_keeps_its_lineage_and_becomes_champion(registry):
    import mlflow
    from mlflow.telemetry.client import get_telemetry_client

    first = _register(registry, "reg_first", auc=0.8, approval=APPROVED, reason="no champion")

    assert first.version == "1"
    assert first.approval == APPROVED
    assert first.metrics == {"roc_auc": 0.8, "f1": 0.5, "calibration_ece": None}
    assert first.hyperparameters == {"epochs": "3", "id-columns": "customer_id,snapshot_date"}
    assert first.code_version == "tree:1234"
    assert first.data_version.endswith("@sha256:ab")
    assert first.baseline_uri == "file:///lake/monitoring/x/baseline"
    assert first.model_uri == "file:///lake/models/reg_first/m1/model.tar.gz"
    assert first.registry_ref == "models:/headrace-reg-first/1"
    assert registry.approved_version("reg_first") == first
    client = mlflow.MlflowClient(registry.tracking_uri, registry.tracking_uri)
    assert client.get_model_version_by_alias("headrace-reg-first", "champion").version == 1
    # The registration's run holds the metrics for MLflow's UI to compare.
    run = client.get_run(client.get_model_version("headrace-reg-first", "1").run_id)
    assert run.data.metrics == {"roc_auc": 0.8, "f1": 0.5}
    assert run.data.params["epochs"] == "3"
    assert get_telemetry_client() is None


def test_mlflow_telemetry_stays_off_outside_pytest(repo_root):
    import os
    import sys

    # MLflow turns its telemetry off by itself under pytest or CI, so the check runs in a child
    # process without those markers, as an Airflow worker would.
    markers = (
        "PYTEST_CURRENT_TEST",
        "CI",
        "GITHUB_ACTIONS",
        "MLFLOW_DISABLE_TELEMETRY",
        "DO_NOT_TRACK",
    )
    env = {k: v for k, v in os.environ.items() if k not in markers}
    code = (
        "from include.registry import _import_mlflow; _import_mlflow(); "
        "from mlflow.telemetry.client import get_telemetry_client; "
        "import os; print(get_telemetry_client(), os.environ['MLFLOW_DISABLE_TELEMETRY'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo_root, env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip

    assert result.stdout.split() == ["None", "true"]


def test_mlflow_start_up_lines_keep_their_level(repo_root, tmp_path):
    """A task's log shows stderr as ERROR: MLflow's lines (a new registry database's set-up)
    go through the process's logging at their own level instead."""
    import sys

    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout,"
        " format='%(levelname)s %(name)s: %(message)s')\n"
        "from include.registry import MLflowModelRegistry\n"
        f"print(MLflowModelRegistry('{tmp_path.as_uri()}/models').list_versions('churn'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo_root, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip

    assert "mlflow" not in result.stderr.lower(), result.stderr
    mlflow_lines = [line for line in result.stdout.splitlines() if " mlflow." in line]
    assert mlflow_lines, result.stdout  # the database set-up was logged…
    assert all(line.startswith("INFO ") for line in mlflow_lines), mlflow_lines  # …at INFO
    assert result.stdout.splitlines()[-1] == "[]"


def test_pending_challenger_waits_then_a_person_decides(registry):
    _register(registry, "reg_flow", auc=0.80, approval=APPROVED)
    second = _register(registry, "reg_flow", auc=0.801, approval=PENDING, model="m2")

    assert second.version == "2" and second.approver == ""
    assert registry.approved_version("reg_flow").version == "1"

    approved = approve_pending_version(
        "reg_flow", "2", "ada@example.com", "looked at the card", registry=registry
    )

    assert approved["approval"] == APPROVED and approved["approver"] == "ada@example.com"
    assert approved["approval_reason"] == "looked at the card"
    assert registry.approved_version("reg_flow").version == "2"
    # The approval task retried after it got through: the same decision again is a no-op.
    retried = approve_pending_version(
        "reg_flow", "2", "ada@example.com", "looked at the card", registry=registry
    )
    assert retried == approved
    # A decided version cannot be decided again through the manual-approval entry point.
    with pytest.raises(RegistryError, match="version 2 is Approved, not PendingManualApproval"):
        approve_pending_version("reg_flow", "2", "ada@example.com", "again", registry=registry)

    # A person can turn a pending version down too; the champion stays.
    _register(registry, "reg_flow", auc=0.79, approval=PENDING, model="m3")
    rejected = approve_pending_version(
        "reg_flow", "3", "ada@example.com", "worse", decision=REJECTED, registry=registry
    )
    assert rejected["approval"] == REJECTED
    assert registry.approved_version("reg_flow").version == "2"

    # Rejecting the champion rolls back to the newest approved version before it.
    registry.set_approval("reg_flow", "2", REJECTED, approver="bob", reason="bad canary")
    assert registry.approved_version("reg_flow").version == "1"
    assert [(v.version, v.approval) for v in registry.list_versions("reg_flow")] == [
        ("1", APPROVED),
        ("2", REJECTED),
        ("3", REJECTED),
    ]


def test_rejecting_the_only_approved_version_leaves_no_champion(registry):
    import mlflow

    _register(registry, "reg_alone", auc=0.8, approval=APPROVED)
    registry.set_approval("reg_alone", "1", REJECTED, approver="bob", reason="leak found")

    assert registry.approved_version("reg_alone") is None
    client = mlflow.MlflowClient(registry.tracking_uri, registry.tracking_uri)
    assert "champion" not in client.get_registered_model("headrace-reg-alone").aliases


def test_removing_a_dataset_deletes_its_versions_and_nothing_else(registry):
    _register(registry, "reg_gone", auc=0.8, approval=APPROVED)
    _register(registry, "reg_gone", auc=0.9, approval=APPROVED, model="m2")
    _register(registry, "reg_kept", auc=0.7, approval=APPROVED)

    assert registry.remove_dataset("reg_gone") == 2

    assert registry.list_versions("reg_gone") == []
    assert registry.approved_version("reg_gone") is None
    assert [v.version for v in registry.list_versions("reg_kept")] == ["1"]
    assert registry.remove_dataset("reg_gone") == 0
    # A new registration starts the dataset over at version 1.
    assert _register(registry, "reg_gone", auc=0.8, approval=APPROVED).version == "1"


def test_bad_requests_name_the_problem(registry):
    with pytest.raises(RegistryError, match="approval 'Maybe' is not one of"):
        _register(registry, "reg_bad", auc=0.8, approval="Maybe")
    with pytest.raises(RegistryError, match="metric 'roc_auc' must be a finite number"):
        _register(registry, "reg_bad", auc=float("nan"), approval=APPROVED)
    _register(registry, "reg_bad", auc=0.8, approval=APPROVED)
    with pytest.raises(RegistryError, match="reg_bad has no model version '7'"):
        registry.get_version("reg_bad", "7")
    with pytest.raises(RegistryError, match="approver is empty"):
        registry.set_approval("reg_bad", "1", REJECTED, approver=" ", reason="x")
    with pytest.raises(RegistryError, match="decision 'Pending' must be Approved or Rejected"):
        approve_pending_version("reg_bad", "1", "ada", "x", decision="Pending", registry=registry)
    with pytest.raises(RegistryError, match="dataset 'Bad-Name' is not a valid dataset name"):
        registered_model_name("Bad-Name")


def _evaluation(seed: int, signal: float) -> dict:
    """A real evaluation of a synthetic model, as training/train.py writes it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 2))
    region = np.where(X[:, 1] > 0, "eu_west", "us_east")
    y = (X[:, 0] + rng.normal(scale=1.0, size=300) > 0).astype(int)

    def predict(features):
        return 1 / (1 + np.exp(-signal * features[:, 0]))

    scores = predict(X)
    return {
        "metrics": evaluate_binary_classifier(y, scores),
        "groups": group_metrics(y, scores, {"region": region}),
        "permutation_importance": permutation_importance(predict, X, y, ["tenure", "noise"]),
    }


def _write_manifest(lake: Path, dataset: str) -> str:
    manifest = {
        "dataset": dataset,
        "ds": "2026-01-07",
        "label": "churned",
        "features": ["tenure", "noise"],
        "splits": {
            "train": {"rows": 700, "label_mean": 0.2},
            "validation": {"rows": 150, "label_mean": 0.2},
            "test": {"rows": 300, "label_mean": 0.5},
        },
    }
    path = lake / "features" / dataset / "ds=2026-01-07" / "_manifest.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest))
    # As the lake's jobs spell URIs: Path.as_uri() would percent-encode the "=".
    return f"file://{path}"


def test_register_trained_model_compares_registers_and_writes_the_card(registry, models_zone):
    lake = Path(models_zone.removeprefix("file://")).parent
    manifest_uri = _write_manifest(lake, "reg_e2e")
    common = {
        "registry": registry,
        "models_zone_uri": models_zone,
        "hyperparameters": {"epochs": 5, "learning-rate": 0.001},
        "manifest_uri": manifest_uri,
        "baseline_uri": f"{lake.as_uri()}/monitoring/reg_e2e/baseline",
        "code_version_id": "tree:abc",
    }

    first = register_trained_model(
        "reg_e2e",
        model_uri="file:///lake/models/reg_e2e/job-1/model.tar.gz",
        evaluation=_evaluation(0, signal=3.0),
        evaluation_uri="file:///lake/models/reg_e2e/job-1/evaluation.json",
        **common,
    )

    assert first["version"] == "1" and first["approval"] == APPROVED
    assert first["champion_version"] is None
    assert first["card_uri"] == f"{models_zone}/reg_e2e/1/model_card.json"
    card = json.loads(Path(first["card_uri"].removeprefix("file://")).read_text())
    assert card["approval"]["status"] == APPROVED
    assert card["training_data"]["rows_per_split"] == {"train": 700, "validation": 150, "test": 300}
    stored = registry.get_version("reg_e2e", "1")
    assert stored.card_uri == first["card_uri"]
    expected_digest = hashlib.sha256(Path(manifest_uri.removeprefix("file://")).read_bytes())
    assert stored.data_version == f"{manifest_uri}@sha256:{expected_digest.hexdigest()}"

    # A weaker challenger (its scores use the signal less sharply but rank the same way, so its
    # AUC is equal; other hyperparameters) is registered as pending, naming both AUCs.
    common["hyperparameters"] = {"epochs": 8, "learning-rate": 0.001}
    second = register_trained_model(
        "reg_e2e",
        model_uri="file:///lake/models/reg_e2e/job-2/model.tar.gz",
        evaluation=_evaluation(0, signal=1.0),
        evaluation_uri="file:///lake/models/reg_e2e/job-2/evaluation.json",
        **common,
    )

    assert second["version"] == "2" and second["approval"] == PENDING
    assert second["champion_version"] == "1"
    auc = f"{stored.metrics['roc_auc']:.6f}"
    # The evaluation has no champion_comparison (no champion channel): not paired, so a person.
    assert second["reason"].startswith("NOT PAIRED (the training job had no champion channel)")
    assert (
        f"challenger roc_auc={auc} on its test split vs champion roc_auc={auc}"
        in (second["reason"])
    )
    assert second["decision"]["paired"] is False

    # A retry of the same registration adds no version.
    retried = register_trained_model(
        "reg_e2e",
        model_uri="file:///lake/models/reg_e2e/job-2/model.tar.gz",
        evaluation=_evaluation(0, signal=1.0),
        evaluation_uri="file:///lake/models/reg_e2e/job-2/evaluation.json",
        **common,
    )
    assert retried["version"] == "2" and retried["champion_version"] == "1"
    assert len(registry.list_versions("reg_e2e")) == 2

    # The person's decision reaches the card, in JSON and in Markdown.
    approve_pending_version(
        "reg_e2e", "2", "ada@example.com", "same AUC, newer data", registry=registry
    )
    card_path = Path(second["card_uri"].removeprefix("file://"))
    card = json.loads(card_path.read_text())
    assert card["approval"]["status"] == APPROVED
    assert card["approval"]["approver"] == "ada@example.com"
    assert "- Approval: **Approved** by ada@example.com" in card_path.with_suffix(".md").read_text()


def test_a_model_that_reproduces_a_version_is_recorded_not_registered(registry, models_zone):
    """Two causes for one window (a features and a drift event of the same day) train twice with
    the same data, code and hyperparameters: the second is not a new version, and it asks no
    person for an approval."""
    from include.training_pipeline import pending_approval_extra

    lake = Path(models_zone.removeprefix("file://")).parent
    common = {
        "registry": registry,
        "models_zone_uri": models_zone,
        "hyperparameters": {"epochs": 5, "learning-rate": 0.001},
        "manifest_uri": _write_manifest(lake, "reg_twice"),
        "baseline_uri": f"{lake.as_uri()}/monitoring/reg_twice/baseline",
        "code_version_id": "tree:abc",
        "evaluation": _evaluation(0, signal=3.0),
    }
    first = register_trained_model(
        "reg_twice",
        model_uri="file:///lake/models/reg_twice/job-1/model.tar.gz",
        evaluation_uri="file:///lake/models/reg_twice/job-1/evaluation.json",
        **common,
    )
    again = register_trained_model(
        "reg_twice",
        model_uri="file:///lake/models/reg_twice/job-2/model.tar.gz",
        evaluation_uri="file:///lake/models/reg_twice/job-2/evaluation.json",
        **common,
    )

    assert [v.version for v in registry.list_versions("reg_twice")] == ["1"]
    assert again["reproduced"] is True and again["version"] == first["version"] == "1"
    assert again["reason"] == (
        "reproduces version 1 (same data version, code version and hyperparameters): "
        "file:///lake/models/reg_twice/job-2/model.tar.gz is not registered again"
    )
    assert pending_approval_extra({**again, "approval": PENDING}) is None
    # Other hyperparameters are another model: registered.
    common["hyperparameters"] = {"epochs": 6, "learning-rate": 0.001}
    other = register_trained_model(
        "reg_twice",
        model_uri="file:///lake/models/reg_twice/job-3/model.tar.gz",
        evaluation_uri="file:///lake/models/reg_twice/job-3/evaluation.json",
        **common,
    )
    assert other["version"] == "2" and "reproduced" not in other


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def test_code_version_is_the_commit_only_while_training_is_clean(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "train.py").write_text("print('v1')\n")
    (tmp_path / "README.md").write_text("x\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = _git(tmp_path, "rev-parse", "HEAD")

    assert code_version(tmp_path) == head
    # Changes outside training/ do not make the training code dirty.
    (tmp_path / "README.md").write_text("y\n")
    assert code_version(tmp_path) == head

    (tmp_path / "training" / "train.py").write_text("print('v2')\n")
    dirty = code_version(tmp_path)
    assert dirty.startswith("tree:") and len(dirty) == len("tree:") + 64
    (tmp_path / "training" / "train.py").write_text("print('v3')\n")
    assert code_version(tmp_path) not in (dirty, head)

    # An untracked file is part of what ships, so it counts too; bytecode does not.
    (tmp_path / "training" / "train.py").write_text("print('v1')\n")
    (tmp_path / "training" / "__pycache__").mkdir()
    (tmp_path / "training" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / ".gitignore").write_text("__pycache__/\n")
    assert code_version(tmp_path) == head
    (tmp_path / "training" / "model.py").write_text("W = 1\n")
    assert code_version(tmp_path).startswith("tree:")


def test_code_version_covers_the_modules_the_source_tarball_ships(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "train.py").write_text("print('v1')\n")
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "baseline.py").write_text("BINS = 10\n")
    (tmp_path / "include" / "other.py").write_text("X = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = _git(tmp_path, "rev-parse", "HEAD")
    shared = ["include/baseline.py"]

    assert code_version(tmp_path, shared) == head
    (tmp_path / "include" / "other.py").write_text("X = 2\n")  # not shipped
    assert code_version(tmp_path, shared) == head
    (tmp_path / "include" / "baseline.py").write_text("BINS = 20\n")
    assert code_version(tmp_path) == head  # training/ alone is clean
    dirty = code_version(tmp_path, shared)
    assert dirty.startswith("tree:")
    (tmp_path / "include" / "baseline.py").write_text("BINS = 30\n")
    assert code_version(tmp_path, shared) not in (dirty, head)
    with pytest.raises(RegistryError, match=r"include/gone\.py"):
        code_version(tmp_path, ["include/gone.py"])


def test_code_version_outside_git_hashes_the_tree(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "train.py").write_text("a\n")
    first = code_version(tmp_path)
    (tmp_path / "training" / "train.py").write_text("b\n")

    assert first.startswith("tree:") and code_version(tmp_path) != first
    with pytest.raises(RegistryError, match="no training/ directory"):
        code_version(tmp_path / "training")


def test_data_version_pins_the_manifest_bytes(tmp_path):
    manifest = tmp_path / "_manifest.json"
    manifest.write_bytes(b'{"ds": "2026-01-07"}\n')

    assert data_version(manifest.as_uri()) == (
        f"{manifest.as_uri()}@sha256:{hashlib.sha256(manifest.read_bytes()).hexdigest()}"
    )


def _planted_comparison(champion_tarball: Path, *, perfect: bool) -> dict:
    """The job's ``champion_comparison`` on 200 planted rows: a challenger that ranks every
    positive above every negative (or the champion's own scores) against a random champion."""
    from training.evaluation import paired_auc_comparison

    rng = np.random.default_rng(5)
    y = np.array([0, 1] * 100)
    champion = rng.uniform(size=200)
    challenger = (0.25 + 0.5 * y) if perfect else champion
    return {
        "paired": True,
        "champion_sha256": hashlib.sha256(champion_tarball.read_bytes()).hexdigest(),
        **paired_auc_comparison(y, challenger, champion),
    }


def test_a_paired_comparison_decides_on_its_interval_and_is_recorded(registry, models_zone):
    lake = Path(models_zone.removeprefix("file://")).parent
    manifest_uri = _write_manifest(lake, "reg_paired")
    champion_tarball = lake / "models" / "reg_paired" / "job-1" / "model.tar.gz"
    champion_tarball.parent.mkdir(parents=True)
    champion_tarball.write_bytes(b"the champion's archive")
    common = {
        "registry": registry,
        "models_zone_uri": models_zone,
        "hyperparameters": {"epochs": 5},
        "manifest_uri": manifest_uri,
        "baseline_uri": f"{lake.as_uri()}/monitoring/reg_paired/baseline",
        "code_version_id": "tree:abc",
        "margin": 0.005,
    }

    def register(job: str, evaluation: dict) -> dict:
        # Other hyperparameters per job: the same ones would reproduce the first version.
        return register_trained_model(
            "reg_paired",
            model_uri=f"file://{lake}/models/reg_paired/{job}/model.tar.gz",
            evaluation=evaluation,
            evaluation_uri=f"file://{lake}/models/reg_paired/{job}/evaluation.json",
            **{**common, "hyperparameters": {"epochs": 5, "seed": job}},
        )

    assert register("job-1", _evaluation(0, signal=1.0))["approval"] == APPROVED

    # Identical models on the same rows: difference 0, interval [0, 0]: not promoted.
    level = register(
        "job-2",
        {
            **_evaluation(0, signal=1.0),
            "champion_comparison": _planted_comparison(champion_tarball, perfect=False),
        },
    )
    assert level["approval"] == PENDING and level["champion_version"] == "1"
    assert level["decision"]["interval"] == [0.0, 0.0] and level["decision"]["difference"] == 0.0
    assert "does not clear the margin 0.005000" in level["reason"]

    # A perfect challenger against a random champion: the interval is positive, well above 0.
    comparison = _planted_comparison(champion_tarball, perfect=True)
    better = register("job-3", {**_evaluation(0, signal=1.0), "champion_comparison": comparison})
    assert better["approval"] == APPROVED, better["reason"]
    lower, upper = better["decision"]["interval"]
    assert 0.005 < lower <= comparison["difference"] <= upper
    assert better["decision"]["challenger"] == 1.0
    assert better["decision"]["champion"] == pytest.approx(comparison["champion_auc"])
    assert "on the same 200 test rows" in better["reason"]

    # The registry and the card keep the numbers.
    stored = registry.get_version("reg_paired", better["version"])
    assert stored.decision == better["decision"]
    assert stored.decision["rows"] == 200 and stored.decision["margin"] == 0.005
    assert stored.decision["method"] == "paired bootstrap (percentile)"
    assert stored.approval_reason == better["reason"]
    card_path = Path(better["card_uri"].removeprefix("file://"))
    assert json.loads(card_path.read_text())["champion_challenger"] == better["decision"]
    markdown = card_path.with_suffix(".md").read_text()
    assert "## Champion / challenger" in markdown
    assert f"95% interval of the difference: [{lower:+.6f}, {upper:+.6f}]" in markdown


def test_a_comparison_with_another_model_than_the_champion_is_not_paired(registry, models_zone):
    lake = Path(models_zone.removeprefix("file://")).parent
    manifest_uri = _write_manifest(lake, "reg_stale")
    champion_tarball = lake / "models" / "reg_stale" / "job-1" / "model.tar.gz"
    champion_tarball.parent.mkdir(parents=True)
    champion_tarball.write_bytes(b"the champion's archive")
    comparison = _planted_comparison(champion_tarball, perfect=True)
    champion_tarball.write_bytes(b"another model approved since")  # the digest no longer matches
    common = {
        "registry": registry,
        "models_zone_uri": models_zone,
        "hyperparameters": {"epochs": 5},
        "manifest_uri": manifest_uri,
        "baseline_uri": f"{lake.as_uri()}/monitoring/reg_stale/baseline",
        "code_version_id": "tree:abc",
    }
    register_trained_model(
        "reg_stale",
        model_uri=f"file://{champion_tarball}",
        evaluation=_evaluation(0, signal=1.0),
        evaluation_uri=f"file://{lake}/e1.json",
        **common,
    )

    common["hyperparameters"] = {"epochs": 6}  # another model, not a reproduction
    result = register_trained_model(
        "reg_stale",
        model_uri=f"file://{lake}/models/reg_stale/job-2/model.tar.gz",
        evaluation={**_evaluation(0, signal=3.0), "champion_comparison": comparison},
        evaluation_uri=f"file://{lake}/e2.json",
        **common,
    )

    assert result["approval"] == PENDING
    assert "NOT PAIRED (the job scored another model than champion version 1" in result["reason"]
    assert result["decision"]["paired"] is False
