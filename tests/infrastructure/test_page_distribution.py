"""The Postbacks page in AWS: a private S3 bucket behind CloudFront (origin access control), `/api/*` to API Gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parents[2] / "infrastructure" / "template.json"
CHALICE_CONFIG = Path(__file__).resolve().parents[2] / ".chalice" / "config.json"


def _template() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(TEMPLATE.read_text())
    return loaded


def test_the_bucket_is_private_and_readable_only_by_the_distribution() -> None:
    resources = _template()["Resources"]
    block = resources["PageBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    statements = resources["PageBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (read,) = [s for s in statements if s["Effect"] == "Allow"]
    assert read["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert read["Action"] == "s3:GetObject"
    assert "${PageDistribution}" in read["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]
    control = resources["PageOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
    assert control["OriginAccessControlOriginType"] == "s3" and control["SigningBehavior"] == "always"


def test_the_page_and_the_api_share_one_origin() -> None:
    config = _template()["Resources"]["PageDistribution"]["Properties"]["DistributionConfig"]
    origins = {origin["Id"]: origin for origin in config["Origins"]}
    assert origins["page"]["OriginAccessControlId"] == {"Fn::GetAtt": ["PageOriginAccessControl", "Id"]}
    assert "${RestAPI}.execute-api" in origins["api"]["DomainName"]["Fn::Sub"]
    (api,) = config["CacheBehaviors"]
    assert api["PathPattern"] == "/api/*" and api["TargetOriginId"] == "api"
    assert set(api["AllowedMethods"]) >= {"GET", "POST", "PATCH", "DELETE", "OPTIONS"}
    # `/api/...` reaches the stage named `api`: the app's paths need no rewriting.
    assert json.loads(CHALICE_CONFIG.read_text())["api_gateway_stage"] == "api"
    assert "CustomErrorResponses" not in config  # an API 404 must stay an API 404


def test_other_origins_get_cors_from_the_distribution_on_every_api_response() -> None:
    template = _template()
    assert template["Globals"]["Function"]["Environment"]["Variables"]["POSTBACKS_CORS_ORIGINS"] == {
        "Ref": "CorsOrigins"
    }
    policy = template["Resources"]["ApiCorsPolicy"]
    assert policy["Condition"] == "HasCorsOrigins"
    cors = policy["Properties"]["ResponseHeadersPolicyConfig"]["CorsConfig"]
    assert cors["AccessControlAllowHeaders"]["Items"] == ["Authorization", "Content-Type", "If-Match"]
    assert cors["AccessControlExposeHeaders"]["Items"] == ["ETag", "Location", "Retry-After"]
    assert cors["AccessControlAllowOrigins"]["Items"] == {"Fn::Split": [",", {"Ref": "CorsOrigins"}]}
    assert cors["OriginOverride"] is True and cors["AccessControlAllowCredentials"] is False
