"""scripts/refresh_prices.py: GetProducts requests checked by botocore's Stubber (against the
pricing service model), price list documents shaped as the Price List API returns them parsed
into the table include/cost.py reads. moto has no pricing service, hence the Stubber."""

from __future__ import annotations

import copy
import json

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber

from include.cost import price_table_from_mapping
from scripts import refresh_prices as rp

REGION = "us-east-1"
TABLE = {
    "as_of": "2025-01-01",
    "region": REGION,
    "currency": "USD",
    "source": "hand-entered",
    "note": "kept as it is",
    "sagemaker_instance_hour": {
        "training": {"ml.g5.xlarge": 1.0, "ml.m5.xlarge": 0.2},
        "processing": {"ml.m5.xlarge": 0.2},
        "transform": {"ml.m5.xlarge": 0.2},
    },
    "glue_dpu_hour": 0.4,
    "glue_data_quality_dpu_hour": 0.4,
    "emr_serverless_vcpu_hour": 0.05,
    "emr_serverless_gb_hour": 0.005,
    "sagemaker_spot_discount": 0.5,
    "spot_discount_note": "an assumption",
}


def product(
    service: str,
    usagetype: str,
    usd: str | list[str],
    *,
    region: str = REGION,
    published: str = "2026-11-20T18:03:11Z",
    **attributes: str,
) -> str:
    """One PriceList entry as GetProducts returns it: a JSON document (a string) per product."""
    sku = f"SKU{abs(hash((service, usagetype, region))) % 10**8:08d}"
    dimensions = {
        f"{sku}.JRTCKXETXF.{index}": {
            "unit": "Hrs",
            "endRange": "Inf" if index == len(usd) - 1 else "50",
            "description": f"${price} per unit for {usagetype}",
            "appliesTo": [],
            "rateCode": f"{sku}.JRTCKXETXF.{index}",
            "beginRange": "0" if index == 0 else "50",
            "pricePerUnit": {"USD": price},
        }
        for index, price in enumerate([usd] if isinstance(usd, str) else usd)
    }
    return json.dumps(
        {
            "product": {
                "productFamily": attributes.pop("family", "ML Instance"),
                "attributes": {
                    "regionCode": region,
                    "servicecode": service,
                    "usagetype": usagetype,
                    "locationType": "AWS Region",
                    "location": "US East (N. Virginia)" if region == REGION else region,
                    **attributes,
                },
                "sku": sku,
            },
            "serviceCode": service,
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "priceDimensions": dimensions,
                        "sku": sku,
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                }
            },
            "version": "20261120180311",
            "publicationDate": published,
        }
    )


def sagemaker(usage: str, instance: str, usd: str, **kwargs) -> str:
    component = {"Train": "Training", "Processing": "Processing", "Tsform": "Batch Transform"}
    return product(
        "AmazonSageMaker",
        f"USE1-{usage}:{instance}",
        usd,
        instanceName=instance,
        component=component[usage],
        operation="RunInstance",
        **kwargs,
    )


# What each GetProducts search returns, in the order the script asks (price_queries).
TRAINING_PAGE_1 = [
    sagemaker("Train", "ml.m5.xlarge", "0.2300000000"),
    sagemaker("Train", "ml.c5.xlarge", "0.2040000000"),  # listed by the API, not by the table
    # The same usage type in another region: the region filter's job, checked again here.
    sagemaker("Train", "ml.g5.xlarge", "1.5730000000", region="eu-west-1"),
]
TRAINING_PAGE_2 = [
    # A free tier of 50 hours, then the price: the dearer tier bounds the cost.
    sagemaker("Train", "ml.g5.xlarge", ["0.0000000000", "1.4080000000"]),
]
PROCESSING = [sagemaker("Processing", "ml.m5.xlarge", "0.2300000000")]
TRANSFORM = [sagemaker("Tsform", "ml.m5.xlarge", "0.2300000000")]
GLUE_ETL = [
    product("AWSGlue", "USE1-ETL-DPU-Hour", "0.4400000000", family="AWS Glue", operation="Jobrun")
]
GLUE_DQ = [
    product(
        "AWSGlue",
        "USE1-DataQuality-DPU-Hour",
        "0.4400000000",
        family="AWS Glue",
        published="2026-10-02T00:00:00Z",
    )
]
EMR_SERVERLESS = [
    product("ElasticMapReduce", "USE1-EMR-SERVERLESS-vCPUHours", "0.0526240000", family="Compute"),
    product("ElasticMapReduce", "USE1-EMR-SERVERLESS-MemoryGBHours", "0.0057785000"),
    # ARM and storage share the search's text; neither is what the table prices.
    product("ElasticMapReduce", "USE1-EMR-SERVERLESS-ARM-vCPUHours", "0.0420990000"),
    product("ElasticMapReduce", "USE1-EMR-SERVERLESS-StorageGBHours", "0.0001110000"),
]


def expected_request(service: str, contains: str, token: str | None = None) -> dict:
    request = {
        "ServiceCode": service,
        "Filters": [
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": REGION},
            {"Type": "CONTAINS", "Field": "usagetype", "Value": contains},
        ],
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    if token:
        request["NextToken"] = token
    return request


@pytest.fixture
def pricing():
    """A real botocore pricing client whose calls the Stubber answers (and checks)."""
    client = boto3.client(
        "pricing",
        region_name=rp.PRICING_API_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # pragma: allowlist secret (a dummy credential)
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def queue_answers(stubber: Stubber, glue_dq=GLUE_DQ) -> None:
    def answer(price_list, expected, token=None):
        response = {"FormatVersion": "aws_v1", "PriceList": price_list}
        if token:
            response["NextToken"] = token
        stubber.add_response("get_products", response, expected)

    answer(TRAINING_PAGE_1, expected_request("AmazonSageMaker", "Train:ml."), token="page-2")
    answer(TRAINING_PAGE_2, expected_request("AmazonSageMaker", "Train:ml.", token="page-2"))
    answer(PROCESSING, expected_request("AmazonSageMaker", "Processing:ml."))
    answer(TRANSFORM, expected_request("AmazonSageMaker", "Tsform:ml."))
    answer(GLUE_ETL, expected_request("AWSGlue", "ETL-DPU-Hour"))
    answer(glue_dq, expected_request("AWSGlue", "DataQuality-DPU-Hour"))
    answer(EMR_SERVERLESS, expected_request("ElasticMapReduce", "EMR-SERVERLESS-"))


def test_refresh_prices_every_entry_of_the_table_from_the_price_list(pricing):
    client, stubber = pricing
    queue_answers(stubber)
    table = rp.refresh(client, TABLE, region=REGION, as_of="2026-12-04")

    assert table["sagemaker_instance_hour"] == {
        "training": {"ml.g5.xlarge": 1.408, "ml.m5.xlarge": 0.23},
        "processing": {"ml.m5.xlarge": 0.23},
        "transform": {"ml.m5.xlarge": 0.23},
    }
    assert (table["glue_dpu_hour"], table["glue_data_quality_dpu_hour"]) == (0.44, 0.44)
    assert table["emr_serverless_vcpu_hour"] == 0.052624
    assert table["emr_serverless_gb_hour"] == 0.0057785
    assert (table["as_of"], table["region"], table["currency"]) == ("2026-12-04", REGION, "USD")
    assert table["source"] == (
        "AWS Price List API (pricing GetProducts, on-demand terms), price lists published "
        "2026-10-02..2026-11-20, by scripts/refresh_prices.py"
    )
    # Not published by the API: kept as they were.
    assert table["sagemaker_spot_discount"] == 0.5
    assert (table["note"], table["spot_discount_note"]) == ("kept as it is", "an assumption")
    assert "not_refreshed" not in table
    # What include/cost.py reads.
    prices = price_table_from_mapping(table)
    assert prices.instance_hour("training", "ml.g5.xlarge") == 1.408


def test_an_instance_type_asked_for_is_added_to_its_use(pricing):
    client, stubber = pricing
    queue_answers(stubber)
    table = rp.refresh(
        client,
        TABLE,
        region=REGION,
        as_of="2026-12-04",
        extra_instance_types=[("training", "ml.c5.xlarge")],
    )
    assert table["sagemaker_instance_hour"]["training"]["ml.c5.xlarge"] == 0.204
    assert "ml.c5.xlarge" not in table["sagemaker_instance_hour"]["processing"]


def test_a_price_the_api_does_not_return_fails_the_refresh_naming_it(pricing):
    client, stubber = pricing
    queue_answers(stubber, glue_dq=[])
    with pytest.raises(ValueError) as raised:
        rp.refresh(client, TABLE, region=REGION, as_of="2026-12-04")
    assert str(raised.value) == (
        "the Price List API returned no us-east-1 price for glue_data_quality_dpu_hour; nothing "
        "was written (--keep-missing keeps the old values)"
    )


def test_keep_missing_keeps_the_old_price_and_says_so(pricing):
    client, stubber = pricing
    queue_answers(stubber, glue_dq=[])
    table = rp.refresh(client, TABLE, region=REGION, as_of="2026-12-04", keep_missing=True)
    assert table["glue_data_quality_dpu_hour"] == 0.4
    assert table["not_refreshed"] == ["glue_data_quality_dpu_hour"]
    assert table["glue_dpu_hour"] == 0.44


def test_keep_missing_never_keeps_another_regions_prices():
    fetched = {"glue_dpu_hour": (0.5, "2026-11-20")}
    with pytest.raises(ValueError, match="no eu-west-1 price for emr_serverless_gb_hour"):
        rp.refreshed_table(
            TABLE,
            fetched,
            region="eu-west-1",
            as_of="2026-12-04",
            keys=["glue_dpu_hour", "emr_serverless_gb_hour"],
            keep_missing=True,
        )


def test_the_parser_keeps_only_the_querys_usage_types_in_the_region():
    query = next(q for q in rp.price_queries({}) if q.service_code == "ElasticMapReduce")
    found = rp.prices_from_price_list(EMR_SERVERLESS, query, REGION)
    assert {key: price for key, (price, _) in found.items()} == {
        "emr_serverless_vcpu_hour": 0.052624,
        "emr_serverless_gb_hour": 0.0057785,
    }
    assert rp.prices_from_price_list(EMR_SERVERLESS, query, "eu-west-1") == {}


def test_on_demand_usd_is_the_dearest_dimension_and_none_without_on_demand_terms():
    tiered = json.loads(sagemaker("Train", "ml.g5.xlarge", ["0.0000000000", "1.4080000000"]))
    assert rp.on_demand_usd(tiered) == 1.408
    reserved_only = copy.deepcopy(tiered)
    reserved_only["terms"] = {"Reserved": reserved_only["terms"]["OnDemand"]}
    assert rp.on_demand_usd(reserved_only) is None


def test_botocores_model_checks_every_request_before_the_stubber_answers():
    client = boto3.client(
        "pricing",
        region_name=REGION,
        aws_access_key_id="t",
        aws_secret_access_key="t",  # pragma: allowlist secret (a dummy credential)
    )
    request = rp.price_queries({})[0].request(REGION)
    del request["Filters"][1]["Value"]  # a filter the pricing model requires a value of
    request["MaxResults"] = "100"
    with Stubber(client) as stubber:
        stubber.add_response("get_products", {"PriceList": []}, expected_params=None)
        with pytest.raises(ParamValidationError) as raised:
            client.get_products(**request)
    assert 'Missing required parameter in Filters[1]: "Value"' in str(raised.value)
    assert "Invalid type for parameter MaxResults" in str(raised.value)


def test_main_rewrites_the_table_dated_today(pricing, tmp_path, monkeypatch, capsys):
    client, stubber = pricing
    queue_answers(stubber)
    path = tmp_path / "aws_prices.json"
    path.write_text(json.dumps(TABLE))
    monkeypatch.setattr(boto3, "client", lambda service, region_name: client)
    assert rp.main(["--table", str(path)]) == 0
    written = json.loads(path.read_text())
    assert written["sagemaker_instance_hour"]["training"]["ml.g5.xlarge"] == 1.408
    assert written["as_of"] != TABLE["as_of"]
    assert f"wrote {path} (us-east-1, as of {written['as_of']})" in capsys.readouterr().out


def test_main_refuses_a_bad_instance_type_argument(capsys):
    with pytest.raises(SystemExit):
        rp.main(["--instance-type", "ml.g5.4xlarge"])
    assert "must be USE=TYPE" in capsys.readouterr().err
