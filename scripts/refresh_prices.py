"""Refresh include/aws_prices.json from the AWS Price List API (``pricing`` GetProducts).

    python scripts/refresh_prices.py [--region us-east-1] [--instance-type training=ml.g5.4xlarge]

Fetches the on-demand price of every SageMaker instance type the table lists (per use: training,
processing, transform), the Glue ETL and Glue Data Quality DPU-hour, and EMR Serverless's
vCPU-hour and GB-hour (x86) for one region, then rewrites the table dated today. The spot
discount is an assumption the API does not publish and is kept as it is. A price the API does not
return fails the refresh, naming it, and nothing is written (``--keep-missing`` keeps the old value
instead, for the table's own region only). Needs credentials allowed ``pricing:GetProducts``.

The parsing (:func:`prices_from_price_list`, :func:`refreshed_table`) is separate from the calls
(:func:`fetch_price_list`), so it is tested on price list documents without AWS.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from include.cost import PRICES_PATH, SAGEMAKER_USES, price_table_from_mapping  # noqa: E402

# The Price List API answers in these regions only; any of them lists every region's prices.
PRICING_API_REGION = "us-east-1"
# How SageMaker's usage types name each use of an instance: ``USE1-Train:ml.m5.xlarge``.
SAGEMAKER_USAGE = {"training": "Train", "processing": "Processing", "transform": "Tsform"}
# Usage types start with a region code (``USE1-``, ``EU-``…) that differs per region.
_REGION_CODE = r"(?:[A-Z0-9]+-)?"


@dataclass(frozen=True)
class PriceQuery:
    """One GetProducts search, and which of its products' usage types are prices we keep."""

    service_code: str
    usage_contains: str
    # A usage type (region code stripped) → the table key it prices.
    usage_keys: Mapping[str, str]

    def request(self, region: str) -> dict[str, Any]:
        """GetProducts' parameters: the region's products whose usage type holds the text."""
        return {
            "ServiceCode": self.service_code,
            "Filters": [
                {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
                {"Type": "CONTAINS", "Field": "usagetype", "Value": self.usage_contains},
            ],
            "FormatVersion": "aws_v1",
            "MaxResults": 100,
        }


def price_queries(instance_types: Mapping[str, Iterable[str]]) -> list[PriceQuery]:
    """The searches that price a table listing ``instance_types`` (use → SageMaker types).

    Table keys: ``sagemaker_instance_hour.<use>.<type>`` and the other prices' own names.
    """
    queries = [
        PriceQuery(
            "AmazonSageMaker",
            f"{SAGEMAKER_USAGE[use]}:ml.",
            {
                f"{SAGEMAKER_USAGE[use]}:{name}": f"sagemaker_instance_hour.{use}.{name}"
                for name in sorted(instance_types.get(use, ()))
            },
        )
        for use in SAGEMAKER_USES
    ]
    queries.append(PriceQuery("AWSGlue", "ETL-DPU-Hour", {"ETL-DPU-Hour": "glue_dpu_hour"}))
    queries.append(
        PriceQuery(
            "AWSGlue",
            "DataQuality-DPU-Hour",
            {"DataQuality-DPU-Hour": "glue_data_quality_dpu_hour"},
        )
    )
    queries.append(
        PriceQuery(
            "ElasticMapReduce",
            "EMR-SERVERLESS-",
            {
                "EMR-SERVERLESS-vCPUHours": "emr_serverless_vcpu_hour",
                "EMR-SERVERLESS-MemoryGBHours": "emr_serverless_gb_hour",
            },
        )
    )
    return queries


def on_demand_usd(product: Mapping[str, Any]) -> float | None:
    """A product's on-demand price in USD per unit: the highest of its price dimensions (a
    tiered price's dearest tier bounds the cost); ``None`` when it has no on-demand term."""
    prices = [
        float(dimension["pricePerUnit"]["USD"])
        for term in (product.get("terms", {}).get("OnDemand") or {}).values()
        for dimension in (term.get("priceDimensions") or {}).values()
        if "USD" in dimension.get("pricePerUnit", {})
    ]
    return max(prices) if prices else None


def prices_from_price_list(
    price_list: Iterable[str | Mapping[str, Any]], query: PriceQuery, region: str
) -> dict[str, tuple[float, str]]:
    """Table key → (USD, publication date) for the query's usage types found in ``price_list``
    (GetProducts' ``PriceList``: one JSON document per product).

    A product of another region, another usage type (a near match of the search, an ARM or Flex
    variant) or without an on-demand price is skipped. Several products of one usage type: the
    dearest.
    """
    found: dict[str, tuple[float, str]] = {}
    patterns = {
        key: re.compile(f"^{_REGION_CODE}{re.escape(usage)}$")
        for usage, key in query.usage_keys.items()
    }
    for item in price_list:
        product = json.loads(item) if isinstance(item, str) else item
        attributes = product.get("product", {}).get("attributes", {})
        if attributes.get("regionCode", region) != region:
            continue
        usage = attributes.get("usagetype", "")
        key = next((key for key, pattern in patterns.items() if pattern.match(usage)), None)
        price = on_demand_usd(product)
        if key is None or price is None:
            continue
        published = str(product.get("publicationDate", ""))
        if key not in found or price > found[key][0]:
            found[key] = (price, published)
    return found


def fetch_price_list(client, query: PriceQuery, region: str) -> list[str]:
    """Every product document of ``query`` in ``region``, following ``NextToken``."""
    documents: list[str] = []
    token = None
    while True:
        request = query.request(region)
        if token:
            request["NextToken"] = token
        response = client.get_products(**request)
        documents.extend(response.get("PriceList", []))
        token = response.get("NextToken")
        if not token:
            return documents


def _instance_types(table: Mapping[str, Any]) -> dict[str, list[str]]:
    return {use: sorted(table["sagemaker_instance_hour"][use]) for use in SAGEMAKER_USES}


def refreshed_table(
    table: Mapping[str, Any],
    fetched: Mapping[str, tuple[float, str]],
    *,
    region: str,
    as_of: str,
    keys: Iterable[str],
    keep_missing: bool = False,
) -> dict[str, Any]:
    """``table`` with every key of ``keys`` priced from ``fetched``, dated ``as_of``.

    :raises ValueError: a key has no fetched price (unless ``keep_missing``, which keeps the
        table's value and lists the key under ``not_refreshed``; only for the table's region).
    """
    keys = list(keys)
    missing = [key for key in keys if key not in fetched]
    if missing and (not keep_missing or region != table["region"]):
        raise ValueError(
            f"the Price List API returned no {region} price for {', '.join(missing)}; nothing "
            "was written"
            + ("" if region != table["region"] else " (--keep-missing keeps the old values)")
        )
    new = json.loads(json.dumps(table))
    new["sagemaker_instance_hour"] = {use: {} for use in SAGEMAKER_USES}
    for key in keys:
        price = fetched[key][0] if key in fetched else _lookup(table, key)
        _assign(new, key, price)
    published = sorted({date for _, date in fetched.values() if date})
    new.update(
        as_of=as_of,
        region=region,
        currency="USD",
        source=(
            "AWS Price List API (pricing GetProducts, on-demand terms)"
            + (
                f", price lists published {published[0][:10]}..{published[-1][:10]}"
                if published
                else ""
            )
            + ", by scripts/refresh_prices.py"
        ),
    )
    if missing:
        new["not_refreshed"] = missing
    else:
        new.pop("not_refreshed", None)
    return new


def _lookup(table: Mapping[str, Any], key: str) -> float:
    value: Any = table
    for part in _key_parts(key):
        value = value[part]
    return value


def _assign(table: dict[str, Any], key: str, price: float) -> None:
    *parents, last = _key_parts(key)
    for part in parents:
        table = table.setdefault(part, {})
    table[last] = price


def _key_parts(key: str) -> list[str]:
    # sagemaker_instance_hour.<use>.<ml.type.size>: the instance type holds dots itself.
    if key.startswith("sagemaker_instance_hour."):
        _, use, name = key.split(".", 2)
        return ["sagemaker_instance_hour", use, name]
    return [key]


def refresh(
    client,
    table: Mapping[str, Any],
    *,
    region: str,
    as_of: str,
    extra_instance_types: Iterable[tuple[str, str]] = (),
    keep_missing: bool = False,
) -> dict[str, Any]:
    """The refreshed table: ``table``'s prices (plus ``extra_instance_types``, ``(use, type)``)
    fetched for ``region`` with the ``pricing`` client."""
    instance_types = _instance_types(table)
    for use, name in extra_instance_types:
        if use not in SAGEMAKER_USES:
            raise ValueError(f"unknown SageMaker use {use!r}; uses: {', '.join(SAGEMAKER_USES)}")
        instance_types[use] = sorted({*instance_types[use], name})
    fetched: dict[str, tuple[float, str]] = {}
    keys: list[str] = []
    for query in price_queries(instance_types):
        keys.extend(query.usage_keys.values())
        fetched.update(
            prices_from_price_list(fetch_price_list(client, query, region), query, region)
        )
    new = refreshed_table(
        table, fetched, region=region, as_of=as_of, keys=keys, keep_missing=keep_missing
    )
    price_table_from_mapping(new, "the refreshed table")  # what include/cost.py will read
    return new


def _instance_type_argument(value: str) -> tuple[str, str]:
    use, _, name = value.partition("=")
    if use not in SAGEMAKER_USES or not name.startswith("ml."):
        raise argparse.ArgumentTypeError(
            f"{value!r} must be USE=TYPE with USE one of {', '.join(SAGEMAKER_USES)}, e.g. "
            "training=ml.g5.4xlarge"
        )
    return use, name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--region", default=None, help="prices of this region (default: the table's)"
    )
    parser.add_argument("--table", type=Path, default=PRICES_PATH, help="the table to refresh")
    parser.add_argument(
        "--instance-type",
        action="append",
        default=[],
        type=_instance_type_argument,
        metavar="USE=TYPE",
        help="also price this SageMaker instance type for this use (training, processing, "
        "transform); repeatable",
    )
    parser.add_argument(
        "--keep-missing",
        action="store_true",
        help="keep the old value of a price the API does not return (the table's region only)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the table, write nothing")
    args = parser.parse_args(argv)

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    table = json.loads(args.table.read_text(encoding="utf-8"))
    try:
        new = refresh(
            boto3.client("pricing", region_name=PRICING_API_REGION),
            table,
            region=args.region or table["region"],
            as_of=datetime.now(UTC).date().isoformat(),
            extra_instance_types=args.instance_type,
            keep_missing=args.keep_missing,
        )
    except (ValueError, BotoCoreError, ClientError) as error:
        print(f"refresh_prices: {error}", file=sys.stderr)
        return 1
    text = json.dumps(new, indent=2) + "\n"
    if args.dry_run:
        sys.stdout.write(text)
    else:
        args.table.write_text(text, encoding="utf-8")
        print(f"wrote {args.table} ({new['region']}, as of {new['as_of']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
