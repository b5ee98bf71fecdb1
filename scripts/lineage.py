"""Print the lineage chain of a day's predictions or of a model version, and draw it as HTML.

Reads the OpenLineage events in the lake (``lineage/events/``) and walks from the committed
predictions of the day, or from the model version's artifact, back to the landing files and on
to what used them (include/lineage_graph.py). Run it with the worker environment; the lake comes
from the settings in the environment (``PIPELINE_TARGET``, ``HEADRACE_LAKE_ROOT``):

    python scripts/lineage.py --dataset churn --predictions-day 2026-01-06
    python scripts/lineage.py --dataset churn --model-version 1 --html /tmp/model-1.html

Prints one line per step (stage, dataset, task, Airflow run id, time, external job id), then the
links the events do not carry, then the path of the HTML page (default
``<lake>/lineage/chains/<dataset>-<what>.html``). Exit 1 when nothing matches, 2 on bad input.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from include.config import ConfigError, Settings, load_settings
from include.lineage import dataset_name, events_uri, read_events
from include.lineage_graph import (
    DatasetRef,
    LineageGraph,
    chain_for,
    chain_html,
    chain_text,
    lake_relative,
    load_json,
    stage_of,
    training_window_features,
)

NOT_FOUND = 1
USAGE = 2
_DATASET = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class CliError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day YYYY-MM-DD, got {text!r}") from None


def _dataset(text: str) -> str:
    if not _DATASET.match(text):
        raise argparse.ArgumentTypeError(f"not a dataset name: {text!r}")
    return text


def _lake_path(settings: Settings) -> str:
    return dataset_name(settings.lake_root)[1]


def _model_card(settings: Settings, dataset: str, version: str) -> tuple[dict | None, str]:
    from include.registry import model_version_uri

    uri = model_version_uri(settings.zone_uri("models"), dataset, version, "model_card.json")
    return load_json(uri), uri


def _model_uri(settings: Settings, dataset: str, version: str) -> tuple[str, dict | None]:
    """The version's model artifact: from its model card in the lake, else the registry."""
    card, card_uri = _model_card(settings, dataset, version)
    if card is not None:
        return card["model"]["model_uri"], card
    from include.registry import RegistryError, registry_for

    try:
        return registry_for(settings).get_version(dataset, version).model_uri, None
    except RegistryError as error:
        raise CliError(
            NOT_FOUND,
            f"{dataset} has no model version {version}: no model card at {card_uri}, "
            f"and the registry says: {error}",
        ) from None


def _training_inputs(model_uri: str, card: dict | None) -> dict:
    """The model's features from its card's training window (``data_version`` names it)."""
    data_version = ((card or {}).get("training_data") or {}).get("data_version") or ""
    window_uri = data_version.split("@", 1)[0]
    window = load_json(window_uri) if window_uri else None
    return {dataset_name(model_uri): training_window_features(window)} if window else {}


def _start(graph: LineageGraph, uri: str) -> DatasetRef:
    """The dataset of ``uri`` as the events name it (matched inside the lake, so a lake copied
    elsewhere still matches), or as the URI names it when no event does."""
    found = graph.outputs_at(lake_relative(dataset_name(uri)[1]))
    return found[-1] if found else DatasetRef(*dataset_name(uri))


def predictions_start(settings: Settings, graph: LineageGraph, dataset: str, day: str):
    """The committed predictions partitions of the day (its ``_manifest.json`` names their
    files), the model card of the version that scored them, and the manifest's URI."""
    day_uri = f"{settings.zone_uri('predictions')}/{dataset}/ds={day}"
    manifest = load_json(f"{day_uri}/_manifest.json")
    if manifest is None:
        raise CliError(
            NOT_FOUND,
            f"no predictions of {dataset} for {day}: no committed manifest at "
            f"{day_uri}/_manifest.json",
        )
    folders = sorted({entry["path"].split("/", 1)[0] for entry in manifest.get("files") or []})
    if not folders:
        raise CliError(
            NOT_FOUND, f"the predictions manifest {day_uri}/_manifest.json lists no files"
        )
    starts = [_start(graph, f"{day_uri}/{folder}") for folder in folders]
    card = None
    if manifest.get("model_version"):
        card, _ = _model_card(settings, dataset, str(manifest["model_version"]))
    return starts, card, manifest


def build_chain(settings: Settings, dataset: str, day: str | None, version: str | None):
    events = read_events(settings)
    if not events:
        raise CliError(NOT_FOUND, f"no OpenLineage events under {events_uri(settings)}")
    graph = LineageGraph(events)
    if day is not None:
        starts, card, manifest = predictions_start(settings, graph, dataset, day)
        model_uri = manifest.get("model_uri")
        version = str(manifest.get("model_version") or "") or None
        what = f"predictions of {dataset} for {day}"
    else:
        model_uri, card = _model_uri(settings, dataset, version)
        starts = [_start(graph, model_uri)]
        what = f"model version {version} of {dataset}"
    if not any(graph.writers(ref.key) or graph.readers(ref.key) for ref in starts):
        names = ", ".join(ref.name for ref in starts)
        raise CliError(
            NOT_FOUND,
            f"no OpenLineage event under {events_uri(settings)} names the {what} ({names})",
        )
    training = _training_inputs(model_uri, card) if model_uri else {}
    chain = chain_for(graph, starts, training_inputs=training)
    if model_uri and version:
        model_step = chain.steps.get(_start(graph, model_uri).key)
        if model_step is not None and stage_of(model_step.dataset.name) == "model":
            approval = ((card or {}).get("approval") or {}).get("status")
            model_step.note = f"model version {version}" + (f" ({approval})" if approval else "")
    return chain, what


def _default_html_uri(settings: Settings, dataset: str, day: str | None, version: str | None):
    name = f"{dataset}-predictions-{day}" if day else f"{dataset}-model-{version}"
    return f"{settings.zone_uri('lineage')}/chains/{name}.html"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lineage.py", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, type=_dataset, help="e.g. churn")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--predictions-day", type=_day, help="the day of predictions (YYYY-MM-DD)")
    which.add_argument("--model-version", help="the registered model version, e.g. 1")
    parser.add_argument(
        "--html", help="where to write the page; default <lake>/lineage/chains/<…>.html"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"lineage: {error}", file=sys.stderr)
        return USAGE
    try:
        chain, what = build_chain(settings, args.dataset, args.predictions_day, args.model_version)
    except CliError as error:
        print(f"lineage: {error}", file=sys.stderr)
        return error.status
    lake_path = _lake_path(settings)
    print(f"lineage of the {what}")
    print(chain_text(chain, lake_path))
    page = chain_html(chain, f"Lineage of the {what}", lake_path)
    if args.html:
        path = Path(args.html)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        where = str(path)
    else:
        from include.storage import storage_for

        uri = _default_html_uri(settings, args.dataset, args.predictions_day, args.model_version)
        storage_for(uri).write_bytes(uri, page.encode("utf-8"))
        where = uri[len("file://") :] if uri.startswith("file://") else uri
    print(f"html: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
