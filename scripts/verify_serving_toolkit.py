"""Serve a freshly trained ``model.tar.gz`` through AWS's own serving code, offline, and check it.

Batch transform runs our model in the SageMaker PyTorch inference DLC (2.5.1 CPU): TorchServe's
Java frontend hands each mini-batch to a Python worker (``ts.model_service_worker``), which calls
the ``sagemaker-pytorch-inference`` toolkit's ``handler_service.HandlerService``; its
``sagemaker_inference.transformer.Transformer`` imports ``code/inference.py`` from the model
directory and calls our ``model_fn``/``input_fn``/``predict_fn``/``output_fn`` with the request's
Content-Type and Accept headers. This script runs that Python side for real:

1. builds (or reuses) a side virtualenv, ``.local/serving-venv`` (git-ignored), with the DLC's
   toolkit, TorchServe's Python backend and the same torch as the repository (:data:`PINS`);
2. trains a tiny model with ``training/train.py`` on generated feature parquet (the training
   tests' generator), packages ``model.tar.gz`` as the local training runtime does
   (``include.local_sagemaker._tar_gz``) and extracts it like the DLC (``/opt/ml/model`` layout);
3. in the side virtualenv, starts TorchServe's real worker (``TorchModelServiceWorker``) on one
   end of a socket pair and plays the Java frontend on the other: the binary load message, then
   one inference message per mini-batch (TorchServe's default batch size of one request), with
   the headers SageMaker sends and the worker environment the DLC sets
   (``decode_input_request=false``, ``PYTHONPATH`` = ``<model dir>/code`` and the model dir,
   ``SAGEMAKER_PROGRAM`` from :func:`include.sagemaker_requests.build_model_request`);
4. checks every response: status 200, content type, one output line per input line, scores equal
   to ``training/inference.predict_fn`` on the same rows (1e-6) and the body byte-equal to what
   the repository's handlers return in-process; then applies the transform's ``DataProcessing``
   join (:func:`include.sagemaker_requests.transform_data_processing`, joined as
   :mod:`include.local_transform` does) and checks each output record carries its own ids.

The requests: headerless CSV lines ``ids…,features…`` written like the scoring input
(``pyarrow.csv``, no header) and split in mini-batches of several lines (SplitType Line,
BatchStrategy MultiRecord); the same lines after the CSV ``InputFilter`` (what the container
really receives); JSON lines; and CSV with ``charset=utf-8`` and lower-case header names (the
toolkit then passes bytes, not str). Not covered: the Java frontend itself, the HTTP layer, the
DLC's exact numpy and pandas builds (numpy 2.1 and pandas 2.2 from PyPI stand in for the image's
conda-forge ones) and GPU serving.

Exit status: 0 every check passed; 1 a check failed (each failure printed); 3 not verified —
the side virtualenv could not be built (no package index, say): ``not verified: <reason>``.

    .venv-training/bin/python scripts/verify_serving_toolkit.py [--rebuild-venv] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVING_VENV = REPO_ROOT / ".local" / "serving-venv"
# The worker environment's uv (the Makefile's UV), which installs the side virtualenv.
UV = REPO_ROOT / ".venv" / "bin" / "uv"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What the 2.5.1 CPU inference DLC runs (aws/deep-learning-containers, pytorch/inference/docker/
# 2.5/py3: sagemaker-pytorch-inference 2.0.25 on sagemaker-inference 1.10.1, TorchServe 0.12.0),
# with the repository's torch: the check is about the serving contract, not the torch release.
# The image's numpy comes from conda-forge unpinned; numpy 2.1 is the one of its build date.
PINS = (
    "torch==2.13.0",
    "numpy==2.1.3",
    "sagemaker-inference==1.10.1",
    "sagemaker-pytorch-inference==2.0.25",
    "torchserve==0.12.0",
    # TorchServe's worker needs it; the DLC installs TorchServe's requirements/common.txt.
    "PyYAML==6.0.2",
    # The DLC's sagemaker stage installs pandas from conda-forge (2.2 when 2.5.1 was built);
    # serving.py parses the batch-transform CSV body with it.
    "pandas==2.2.3",
)
_PINS_FILE = "headrace-pins.txt"
TOOLKIT_PACKAGES = ("sagemaker-inference", "sagemaker-pytorch-inference", "torchserve", "torch")
TOOLKIT_PACKAGES += ("numpy", "pandas")
# The handler TorchServe is configured with in the DLC (default_service_handler).
HANDLER = "sagemaker_pytorch_serving_container.handler_service:handle"

EXIT_PASS = 0
EXIT_MISMATCH = 1
EXIT_NOT_VERIFIED = 3

ROWS = 20
LINES_PER_REQUEST = 7  # 20 rows: mini-batches of 7, 7 and 6 lines
TOLERANCE = 1e-6
TRAIN_FLAGS = [
    "--epochs", "2", "--batch-size", "128", "--hidden-width", "16", "--patience", "1",
    "--checkpoint-every-steps", "0", "--amp", "off",
]  # fmt: skip


class NotVerified(RuntimeError):
    """The toolkit could not be installed; nothing was checked."""


# --- the side virtualenv --------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def venv_is_ready(venv: Path = SERVING_VENV) -> bool:
    """Whether ``venv`` exists with exactly :data:`PINS` installed by this script."""
    pins = venv / _PINS_FILE
    return venv_python(venv).exists() and pins.exists() and pins.read_text().split() == list(PINS)


def torch_source() -> list[str]:
    """Where the CPU build of torch comes from, as the Makefile's TORCH_SOURCE says: the wheel
    folder PIP_FIND_LINKS names, else PyTorch's CPU index (PyPI's torch pulls CUDA packages)."""
    if wheels := os.environ.get("PIP_FIND_LINKS"):
        return ["--find-links", wheels]
    return ["--extra-index-url", TORCH_CPU_INDEX, "--index-strategy", "unsafe-best-match"]


def ensure_venv(venv: Path = SERVING_VENV, *, rebuild: bool = False) -> Path:
    """The side virtualenv's python, building it first if needed; :class:`NotVerified` if the
    pins cannot be installed (no package index, or no uv: `make envs` installs it)."""
    if venv_is_ready(venv) and not rebuild:
        return venv_python(venv)
    if not UV.exists():
        raise NotVerified(f"no {UV.relative_to(REPO_ROOT)}: run `make envs` first")
    if venv.exists():
        shutil.rmtree(venv)
    # No --system-site-packages: only the pins (and what they pull in) are importable there.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {' '.join(PINS)} into {venv} ...", flush=True)
    # uv, as `make envs` installs the environments: it links the packages from its cache where
    # pip unpacked and compiled every file of torch again (measured on 2 cores, 2026-12-05:
    # 6.1 s and 7.6 CPU-s against 37.0 s and 36.8 CPU-s, the same versions installed).
    result = subprocess.run(
        [str(UV), "pip", "install", "--quiet", "--python", str(venv_python(venv)),
         *torch_source(), *PINS],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if result.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise NotVerified(f"uv could not install the toolkit: {lines[-1] if lines else '?'}")
    (venv / _PINS_FILE).write_text("\n".join(PINS) + "\n")
    return venv_python(venv)


# --- the TorchServe side: runs inside the side virtualenv (stdlib and the toolkit only) --------


def _string(value: str | bytes) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return struct.pack("!i", len(data)) + data


def load_message(model_name: str, model_dir: str, handler: str, batch_size: int) -> bytes:
    """The frontend's load command, in the layout ``otf_message_handler._retrieve_load_msg``
    reads: name, path, batch size, handler, gpu id (-1: CPU), envelope, limitMaxImagePixels."""
    return (
        b"L"
        + _string(model_name)
        + _string(model_dir)
        + struct.pack("!i", batch_size)
        + _string(handler)
        + struct.pack("!i", -1)
        + _string("")
        + struct.pack("!?", True)
    )


def inference_message(request_id: str, headers: list[list[str]], body: bytes) -> bytes:
    """One inference command of one request: its HTTP headers, and the raw body as the single
    parameter ``body`` (a non-multipart POST), typed by the request's Content-Type."""
    content_type = next(
        (value for name, value in headers if name.lower() == "content-type"), "text/plain"
    )
    message = b"I" + _string(request_id)
    for name, value in headers:
        message += _string(name) + _string(value)
    message += struct.pack("!i", -1)
    message += _string("body") + _string(content_type) + _string(body)
    message += struct.pack("!i", -1)  # end of parameters
    return message + struct.pack("!i", -1)  # end of the batch


class _Reader:
    def __init__(self, conn: socket.socket):
        self.conn = conn

    def take(self, length: int) -> bytes:
        data = b""
        while len(data) < length:
            chunk = self.conn.recv(length - len(data))
            if not chunk:
                raise RuntimeError("the TorchServe worker closed the connection")
            data += chunk
        return data

    def int(self) -> int:
        return struct.unpack("!i", self.take(4))[0]

    def text(self) -> str:
        return self.take(self.int()).decode("utf-8")


def read_response(conn: socket.socket) -> dict:
    """A response of ``create_predict_response`` (or ``create_load_model_response``)."""
    reader = _Reader(conn)
    response = {"code": reader.int(), "message": reader.text(), "responses": []}
    while (length := reader.int()) != -1:
        item = {"request_id": reader.take(length).decode("utf-8")}
        item["content_type"] = reader.text()
        item["status"] = reader.int()
        item["phrase"] = reader.text()
        item["headers"] = {reader.text(): reader.text() for _ in range(reader.int())}
        item["body"] = reader.take(reader.int()).decode("utf-8", errors="replace")
        response["responses"].append(item)
    return response


def serve(spec_path: Path, out_path: Path) -> None:
    """Side-virtualenv mode: load the model in TorchServe's worker, send every request of the
    spec, and write the responses and the package versions to ``out_path`` (JSON)."""
    from importlib import metadata

    import ts
    from ts.model_service_worker import TorchModelServiceWorker

    spec = json.loads(spec_path.read_text())
    metrics = Path(ts.__file__).parent / "configs" / "metrics.yaml"
    with tempfile.TemporaryDirectory() as sock_dir:
        # A unix socket object it never binds: the connection is the socket pair below.
        worker = TorchModelServiceWorker("unix", f"{sock_dir}/sock.9000", None, None, str(metrics))
        frontend, backend = socket.socketpair()
        frontend.settimeout(300)
        threading.Thread(target=worker.handle_connection, args=(backend,), daemon=True).start()
        frontend.sendall(load_message("model", spec["model_dir"], HANDLER, 1))
        loaded = read_response(frontend)
        results = []
        if loaded["code"] == 200:
            for number, request in enumerate(spec["requests"]):
                frontend.sendall(
                    inference_message(
                        f"request-{number}", request["headers"], request["body"].encode("utf-8")
                    )
                )
                results.append(read_response(frontend))
        frontend.close()
    versions = {name: metadata.version(name) for name in TOOLKIT_PACKAGES}
    versions["python"] = sys.version.split()[0]
    out_path.write_text(json.dumps({"load": loaded, "results": results, "versions": versions}))


def run_in_side_venv(python: Path, model_dir: Path, requests: list[dict], work: Path) -> dict:
    """:func:`serve` in the side virtualenv, in the worker environment the DLC gives it."""
    from include.sagemaker_requests import INFERENCE_PROGRAM

    spec = work / "serving-spec.json"
    out = work / "serving-result.json"
    spec.write_text(json.dumps({"model_dir": str(model_dir), "requests": requests}))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(
        {
            # The toolkit puts <model dir>/code on PYTHONPATH; TorchServe's frontend adds the
            # model dir and starts the worker there, with decode_input_request=false.
            "PYTHONPATH": f"{model_dir / 'code'}:{model_dir}",
            "TS_DECODE_INPUT_REQUEST": "false",
            "SAGEMAKER_PROGRAM": INFERENCE_PROGRAM,
            "SAGEMAKER_SUBMIT_DIRECTORY": str(model_dir / "code"),
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "OMP_NUM_THREADS": "1",
        }
    )
    # -P: the scripts/ folder stays off sys.path, as the worker has only the DLC's packages.
    command = [str(python), "-P", str(Path(__file__).resolve()), "--serve", str(spec), str(out)]
    result = subprocess.run(
        command, cwd=model_dir, env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0 or not out.exists():
        raise RuntimeError(
            f"the TorchServe worker run failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )
    return json.loads(out.read_text())


# --- the model and the requests (the repository's virtualenv) -------------------------------


def train_and_package(work: Path) -> Path:
    """Train a tiny model, write ``model.tar.gz`` and extract it to ``<work>/opt/ml/model``."""
    sys.path.insert(0, str(REPO_ROOT / "tests" / "training"))
    from training_helpers import (
        sagemaker_env,
        subprocess_env,
        train_command,
        write_feature_channels,
    )

    from include.local_sagemaker import _tar_gz

    channels = write_feature_channels(work / "features", rows=600, seed=23)
    run_dir = work / "job"
    result = subprocess.run(
        train_command(*TRAIN_FLAGS),
        env=subprocess_env(sagemaker_env(run_dir, channels)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"training/train.py failed:\n{result.stderr[-4000:]}")
    archive = work / "model.tar.gz"
    archive.write_bytes(_tar_gz(run_dir / "model"))
    model_dir = work / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(model_dir, filter="data")
    return model_dir


def scoring_rows(model_dir: Path, work: Path):
    """The first :data:`ROWS` rows of the test split: ids then features, in model order."""
    import pandas as pd

    config = json.loads((model_dir / "model_config.json").read_text())
    frame = pd.read_parquet(work / "features" / "ds=2026-01-07" / "split=test")
    return frame[[*config["id_columns"], *config["features"]]].head(ROWS), config


def csv_lines(frame) -> list[str]:
    """Headerless CSV lines written as the scoring input is (``pyarrow.csv``, no header)."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pa_csv

    buffer = io.BytesIO()
    options = pa_csv.WriteOptions(include_header=False)
    pa_csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), buffer, options)
    return buffer.getvalue().decode("utf-8").splitlines()


def json_lines(frame, id_columns: list[str]) -> list[str]:
    """JSON lines of the same rows, the ids as strings (ISO dates), the features as numbers."""
    records = frame.astype(dict.fromkeys(id_columns, str)).to_dict("records")
    return [json.dumps(record) for record in records]


def build_cases(frame, config) -> list[dict]:
    """Each case: its requests (mini-batches of lines), the DataProcessing of its transform
    job, and the header names and types SageMaker would send."""
    from include.local_transform import _Format, compile_filter
    from include.sagemaker_requests import transform_data_processing

    ids = config["id_columns"]
    lines = csv_lines(frame)
    csv_processing = transform_data_processing("text/csv", ids)
    csv_filter = compile_filter(csv_processing["InputFilter"], "InputFilter")
    csv_format = _Format("text/csv")
    as_sent = [csv_format.dump(csv_filter(csv_format.parse([line])))[:-1] for line in lines]
    return [
        {
            "name": "csv after InputFilter (what the container receives)",
            "content_type": "text/csv",
            "accept": "text/csv",
            "header_names": ("Content-Type", "Accept"),
            "lines": as_sent,
            "input_records": lines,
            "processing": csv_processing,
        },
        {
            "name": "csv ids…,features… (no InputFilter)",
            "content_type": "text/csv",
            "accept": "text/csv",
            "header_names": ("Content-Type", "Accept"),
            "lines": lines,
            "input_records": lines,
            "processing": None,
        },
        {
            "name": "json lines (whole records in, as the JSON InputFilter $ sends them)",
            "content_type": "application/jsonlines",
            "accept": "application/jsonlines",
            "header_names": ("Content-Type", "Accept"),
            "lines": json_lines(frame, ids),
            "input_records": json_lines(frame, ids),
            "processing": transform_data_processing("application/jsonlines", ids),
        },
        {
            "name": "csv; charset=utf-8, lower-case header names (body stays bytes)",
            "content_type": "text/csv; charset=utf-8",
            "accept": "text/csv",
            "header_names": ("content-type", "accept"),
            "lines": as_sent,
            "input_records": lines,
            "processing": csv_processing,
        },
    ]


def mini_batches(lines: list[str]) -> list[list[str]]:
    return [lines[i : i + LINES_PER_REQUEST] for i in range(0, len(lines), LINES_PER_REQUEST)]


def check_case(case, responses, frame, config, expected, handlers, model) -> list[str]:
    """The failures of one case (empty: it passed)."""
    from include.local_transform import _Format, compile_filter

    failures = []
    ids = config["id_columns"]
    batches = mini_batches(case["lines"])
    records_in = mini_batches(case["input_records"])
    media = case["accept"].split(";")[0]
    fmt = _Format(media)
    start = 0
    for number, (batch, raw, response) in enumerate(
        zip(batches, records_in, responses, strict=True)
    ):
        where = f"{case['name']}: request {number} (rows {start}-{start + len(batch) - 1})"
        item = response["responses"][0] if response["responses"] else {}
        if response["code"] != 200 or item.get("status", 200) != 200:
            failures.append(
                f"{where}: status {response['code']}/{item.get('status')} {response['message']}"
                f": {item.get('body', '')[:2000]}"
            )
            start += len(batch)
            continue
        body = item["body"]
        if item["content_type"].split(";")[0] != media:
            failures.append(f"{where}: response content type {item['content_type']!r}")
        # The same request through the repository's handlers in this process.
        local_body, _ = handlers.output_fn(
            handlers.predict_fn(handlers.input_fn("\n".join(batch), case["content_type"]), model),
            case["accept"],
        )
        if body != local_body:
            failures.append(f"{where}: body differs from the in-process handlers' body")
        out_lines = [line for line in body.splitlines() if line.strip()]
        if len(out_lines) != len(batch):
            failures.append(f"{where}: {len(out_lines)} output lines for {len(batch)} input lines")
            start += len(batch)
            continue
        outputs = fmt.parse(out_lines)
        records = fmt.parse(raw)
        processing = case["processing"]
        if processing is not None:
            # JoinSource=Input and OutputFilter, as include.local_transform applies them.
            if fmt.kind == "csv":
                joined = [r + o for r, o in zip(records, outputs, strict=True)]
            else:
                joined = [
                    {**r, "SageMakerOutput": o} for r, o in zip(records, outputs, strict=True)
                ]
            final = compile_filter(processing["OutputFilter"], "OutputFilter")(joined)
        else:
            final = outputs
        for offset, record in enumerate(final):
            row = start + offset
            want_ids = [str(frame.iloc[row][name]) for name in ids]
            if fmt.kind == "csv":
                got_ids, score = record[: len(ids)], float(record[-1])
            else:
                inner = record.get("SageMakerOutput", record)
                got_ids = [str(record.get(name)) for name in ids]
                score = float(inner["score"])
                if [str(inner.get(name)) for name in ids] != want_ids:
                    failures.append(f"{where}: row {row} SageMakerOutput ids {inner}")
                if set(record) != {*ids, "SageMakerOutput"} and processing is not None:
                    failures.append(f"{where}: row {row} output keys {sorted(record)}")
            if got_ids != want_ids:
                failures.append(f"{where}: row {row} ids {got_ids}, expected {want_ids}")
            if abs(score - float(expected[row])) > TOLERANCE:
                failures.append(
                    f"{where}: row {row} score {score!r}, predict_fn {float(expected[row])!r}"
                )
        start += len(batch)
    if start != len(frame):
        failures.append(f"{case['name']}: {start} rows answered for {len(frame)}")
    return failures


def verify(python: Path, work: Path) -> int:
    sys.path.insert(0, str(REPO_ROOT))
    from training import inference as handlers

    model_dir = train_and_package(work)
    frame, config = scoring_rows(model_dir, work)
    model = handlers.model_fn(str(model_dir))
    expected = handlers.predict_fn(frame, model).scores
    cases = build_cases(frame, config)
    requests = []
    for case in cases:
        type_name, accept_name = case["header_names"]
        for batch in mini_batches(case["lines"]):
            requests.append(
                {
                    "headers": [[type_name, case["content_type"]], [accept_name, case["accept"]]],
                    "body": "\n".join(batch) + "\n",
                }
            )
    served = run_in_side_venv(python, model_dir, requests, work)
    versions = served["versions"]
    print("toolkit: " + ", ".join(f"{name}=={version}" for name, version in versions.items()))
    print(f"model: {len(config['features'])} features, ids {config['id_columns']}, {model_dir}")
    if served["load"]["code"] != 200:
        print(f"FAIL model load: {served['load']['message']}")
        return EXIT_MISMATCH
    failures = []
    results = iter(served["results"])
    for case in cases:
        responses = [next(results) for _ in mini_batches(case["lines"])]
        found = check_case(case, responses, frame, config, expected, handlers, model)
        lines = len(case["lines"])
        verdict = "PASS" if not found else "FAIL"
        print(f"{verdict} {case['name']}: {len(responses)} requests, {lines} lines")
        failures += found
    for failure in failures:
        print(f"  - {failure}")
    if failures:
        print(f"FAIL: {len(failures)} mismatches between the toolkit and predict_fn")
        return EXIT_MISMATCH
    print(
        f"PASS: {len(cases)} cases, {len(requests)} requests through sagemaker-pytorch-inference "
        f"{versions['sagemaker-pytorch-inference']} in TorchServe {versions['torchserve']}'s "
        f"worker; scores equal predict_fn to {TOLERANCE:g}"
    )
    return EXIT_PASS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuild-venv", action="store_true", help="reinstall the side venv")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--serve", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(*args.serve)
        return 0
    try:
        python = ensure_venv(rebuild=args.rebuild_venv)
    except NotVerified as error:
        print(f"not verified: {error}")
        return EXIT_NOT_VERIFIED
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        return verify(python, args.keep)
    with tempfile.TemporaryDirectory(prefix="headrace-serving-") as work:
        return verify(python, Path(work))


if __name__ == "__main__":
    sys.exit(main())
