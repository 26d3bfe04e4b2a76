"""`make package` output: the SAM template lints clean and carries our settings; the zip carries the
code and nothing that belongs to tests or the Lambda runtime; each function's IAM is least privilege."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from functions.storage.models import RULES_VERSION_KEY

pytestmark = pytest.mark.infrastructure

ROOT = Path(__file__).resolve().parents[2]
HEALTH_ATTRIBUTES = {"postback_id", "last_success_at", "consecutive_failures", "last_failure_reason", "last_failure_at"}


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    output = tmp_path_factory.mktemp("package") / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "infrastructure.package", "--stage", "dev", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    yield output


@pytest.fixture(scope="module")
def sam(package: Path) -> dict[str, Any]:
    template: dict[str, Any] = json.loads((package / "sam.json").read_text())
    return template


@pytest.fixture(scope="module")
def zip_names(package: Path) -> list[str]:
    with zipfile.ZipFile(package / "deployment.zip") as archive:
        return archive.namelist()


def _tops(names: list[str]) -> set[str]:
    return {name.split("/", 1)[0] for name in names}


def _statements(sam: dict[str, Any], policy_id: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = sam["Resources"][policy_id]["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        actions = statement["Action"]
        found.update([actions] if isinstance(actions, str) else actions)
    return found


def _resource_ids(statement: dict[str, Any]) -> str:
    return json.dumps(statement["Resource"])


def test_generated_template_passes_cfn_lint(package: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(package / "sam.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zip_contains_the_functions_package_and_app(zip_names: list[str]) -> None:
    assert "app.py" in zip_names
    for module in ("functions/settings.py", "functions/evaluator/handler.py", "functions/sender/handler.py"):
        assert module in zip_names
    assert any(name.startswith("functions/") and name.endswith(".cpython-311.pyc") for name in zip_names) or (
        sys.version_info[:2] != (3, 11)
    )


def test_zip_holds_no_test_only_packages_and_not_the_aws_sdk(zip_names: list[str]) -> None:
    tops = {top.split("-", 1)[0].removesuffix(".py").lower() for top in _tops(zip_names)}
    assert not tops & {"tests", "pytest", "_pytest", "moto", "hypothesis", "mypy", "ruff", "cfnlint"}
    assert not tops & {"boto3", "botocore", "s3transfer", "jmespath"}
    assert {"pynamodb", "urllib3", "certifi", "jwt", "pydantic", "chalice"} <= tops


def test_handler_strings_point_into_the_zip(sam: dict[str, Any], zip_names: list[str]) -> None:
    handlers = {
        logical_id: resource["Properties"]["Handler"]
        for logical_id, resource in sam["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert handlers["OnConversionChange"] == "functions.evaluator.handler.on_conversion_change"
    assert handlers["OnDeliveryMessage"] == "functions.sender.handler.on_delivery_message"
    for handler in handlers.values():
        module = handler.rsplit(".", 1)[0].replace(".", "/") + ".py"
        assert module in zip_names, handler


def test_merged_event_sources_are_valid_and_complete(sam: dict[str, Any]) -> None:
    stream = sam["Resources"]["OnConversionChange"]["Properties"]["Events"]["OnConversionChangeDynamodbEventSource"]
    queue = sam["Resources"]["OnDeliveryMessage"]["Properties"]["Events"]["OnDeliveryMessageSqsEventSource"]
    assert stream["Properties"]["Stream"]["Fn::If"][0] == "CreateConversionsTable"
    assert queue["Properties"]["Queue"] == {"Fn::Sub": "${DeliveriesQueue.Arn}"}
    for source in (stream, queue):
        assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert (
        sam["Resources"]["OnDeliveryMessage"]["Properties"]["Timeout"] * 6
        <= sam["Resources"]["DeliveriesQueue"]["Properties"]["VisibilityTimeout"]
    )


def test_function_roles_carry_only_log_permissions_inline(sam: dict[str, Any]) -> None:
    roles = {
        k: v for k, v in sam["Resources"].items() if v["Type"] == "AWS::IAM::Role" and k != "CodeDeployServiceRole"
    }
    assert roles
    for role in roles.values():
        for policy in role["Properties"].get("Policies", []):
            assert _actions(policy["PolicyDocument"]["Statement"]) <= {
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            }


def test_no_policy_grants_wildcard_actions_or_resources(sam: dict[str, Any]) -> None:
    for policy_id in ("ApiPolicy", "EvaluatorPolicy", "SenderPolicy"):
        for statement in _statements(sam, policy_id):
            assert statement["Effect"] == "Allow"
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            assert not any(action == "*" or action.endswith(":*") for action in actions), policy_id
            assert statement["Resource"] != "*", policy_id


def test_api_cannot_touch_queues_or_the_stream(sam: dict[str, Any]) -> None:
    actions = _actions(_statements(sam, "ApiPolicy"))
    assert not any(action.startswith("sqs:") for action in actions)
    assert not actions & {"dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:Scan"}
    assert sam["Resources"]["ApiPolicy"]["Properties"]["Roles"] == [{"Ref": "ApiHandlerRole"}]


def test_evaluator_reads_postbacks_only_through_the_affiliate_index_and_the_rules_version(
    sam: dict[str, Any],
) -> None:
    statements = _statements(sam, "EvaluatorPolicy")
    on_postbacks = [s for s in statements if "PostbacksTable" in _resource_ids(s)]
    queries = [s for s in on_postbacks if _actions([s]) == {"dynamodb:Query"}]
    gets = [s for s in on_postbacks if _actions([s]) == {"dynamodb:GetItem"}]
    assert len(queries) + len(gets) == len(on_postbacks)
    assert all("index/by_affiliate" in _resource_ids(s) for s in queries)
    # The one base-table item it may read is the rules version.
    assert [s["Condition"] for s in gets] == [
        {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [RULES_VERSION_KEY]}}
    ]
    sends = [s for s in statements if "sqs:SendMessage" in s["Action"]]
    assert {json.dumps(s["Resource"]) for s in sends} == {
        json.dumps({"Fn::GetAtt": ["DeliveriesQueue", "Arn"]}),
        json.dumps({"Fn::GetAtt": ["EvaluatorDeadLetterQueue", "Arn"]}),
    }


def test_sender_writes_postbacks_only_to_their_health_fields(sam: dict[str, Any]) -> None:
    statements = _statements(sam, "SenderPolicy")
    on_postbacks = [s for s in statements if "PostbacksTable" in _resource_ids(s)]
    assert not _actions(on_postbacks) & {"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    updates = [s for s in on_postbacks if "dynamodb:UpdateItem" in s["Action"]]
    [update] = [s for s in updates if "ForAllValues:StringLike" not in s["Condition"]]
    assert set(update["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]) == HEALTH_ATTRIBUTES
    # The host pause (docs/sender.md): host state items only, never a postback's definition.
    [hosts] = [s for s in updates if "ForAllValues:StringLike" in s["Condition"]]
    assert hosts["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["host#*"]
    host_attributes = (HEALTH_ATTRIBUTES - {"last_success_at"}) | {"host_paused_until", "host_pauses"}
    host_attributes.add("host_probe_until")
    assert set(hosts["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]) == host_attributes
    sends = [s for s in statements if "sqs:SendMessage" in s["Action"]]
    assert [s["Resource"] for s in sends] == [{"Fn::GetAtt": ["DeliveriesDeadLetterQueue", "Arn"]}]
    consume = [s for s in statements if "sqs:ReceiveMessage" in s["Action"]]
    assert [s["Resource"] for s in consume] == [{"Fn::GetAtt": ["DeliveriesQueue", "Arn"]}]


# What the Lambda Python runtime puts on sys.path besides the function's code.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")


def test_handlers_import_from_the_zip_with_only_the_runtime_sdk_beside_it(package: Path, tmp_path: Path) -> None:
    code = tmp_path / "task"
    with zipfile.ZipFile(package / "deployment.zip") as archive:
        archive.extractall(code)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    site_packages = Path(boto3.__file__).resolve().parent.parent
    for name in RUNTIME_PACKAGES:
        (runtime / name).symlink_to(site_packages / name)
    script = (
        "import sys; sys.path[:0] = sys.argv[1:3]\n"
        "import functions.evaluator.handler, functions.sender.handler, functions.api.blueprint, app, pynamodb\n"
        # What the handlers import lazily, on their first event, must be in the zip too.
        "import functions.evaluator.service, functions.sender.service, functions.api.openapi, jwt, pydantic\n"
        "assert pynamodb.__file__.startswith(sys.argv[1]), pynamodb.__file__\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, str(code), str(runtime)],
        cwd=tmp_path,
        env={"AWS_DEFAULT_REGION": "us-east-1", "POSTBACKS_LOCAL_MODE": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_protected_routes_are_behind_the_jwt_authorizer_and_health_is_open(sam: dict[str, Any]) -> None:
    paths = sam["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    assert "security" not in paths["/health"]["get"]
    assert "security" not in paths["/openapi.json"]["get"]
    for path, method in [("/postbacks", "post"), ("/postbacks/{id}", "patch"), ("/postbacks/{id}/deliveries", "get")]:
        assert paths[path][method]["security"] == [{"jwt_authorizer": []}], (path, method)


def test_gateway_answers_are_problem_documents(sam: dict[str, Any]) -> None:
    responses = {
        resource["Properties"]["ResponseType"]: resource["Properties"]
        for resource in sam["Resources"].values()
        if resource["Type"] == "AWS::ApiGateway::GatewayResponse"
    }
    assert set(responses) == {
        "UNAUTHORIZED",
        "ACCESS_DENIED",
        "MISSING_AUTHENTICATION_TOKEN",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    }
    for response in responses.values():
        assert response["RestApiId"] == {"Ref": "RestAPI"}
        assert response["ResponseParameters"]["gatewayresponse.header.Content-Type"] == "'application/problem+json'"
    assert responses["UNAUTHORIZED"]["StatusCode"] == "401"
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"


def test_the_authorizer_caches_a_decision_for_at_most_a_minute(sam: dict[str, Any]) -> None:
    body = sam["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    authorizer = body["securityDefinitions"]["jwt_authorizer"]["x-amazon-apigateway-authorizer"]
    assert 0 < authorizer["authorizerResultTtlInSeconds"] <= 60


def test_generated_roles_write_only_their_functions_log_groups(sam: dict[str, Any]) -> None:
    text = json.dumps(sam)
    assert "arn:*:logs:*:*:*" not in text
    for function, role in (
        ("APIHandler", "ApiHandlerRole"),
        ("JwtAuthorizer", "JwtAuthorizerRole"),
        ("OnConversionChange", "OnConversionChangeRole"),
        ("OnDeliveryMessage", "OnDeliveryMessageRole"),
    ):
        name = sam["Resources"][function]["Properties"]["FunctionName"]["Fn::Sub"]
        [policy] = sam["Resources"][role]["Properties"]["Policies"]
        for resource in policy["PolicyDocument"]["Statement"][0]["Resource"]:
            assert resource["Fn::Sub"].split("log-group:/aws/lambda/")[1].removesuffix(":*") == name


def test_the_signing_secret_reaches_only_the_api_and_authorizer_by_arn(sam: dict[str, Any]) -> None:
    assert "POSTBACKS_JWT_SECRET" not in sam["Globals"]["Function"]["Environment"]["Variables"]
    for function in ("APIHandler", "JwtAuthorizer"):
        variables = sam["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["POSTBACKS_JWT_SECRET_ARN"] == {"Ref": "JwtSecretArn"}
    for function in ("OnConversionChange", "OnDeliveryMessage"):
        assert "Environment" not in sam["Resources"][function]["Properties"]


def test_every_function_traces_and_logs_json_into_a_template_log_group(sam: dict[str, Any]) -> None:
    """Chalice emits `Tracing: PassThrough` and no LoggingConfig; the merge template must win for every function."""
    functions = {k: v for k, v in sam["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    tracing_roles = {role["Ref"] for role in sam["Resources"]["TracingPolicy"]["Properties"]["Roles"]}
    for logical_id, function in functions.items():
        props = function["Properties"]
        assert props["Tracing"] == "Active", logical_id
        assert props["LoggingConfig"]["LogFormat"] == "JSON", logical_id
        assert sam["Resources"][props["LoggingConfig"]["LogGroup"]["Ref"]]["Type"] == "AWS::Logs::LogGroup"
        assert props["Role"]["Fn::GetAtt"][0] in tracing_roles, logical_id
    assert sam["Resources"]["RestAPI"]["Properties"]["TracingEnabled"] is True


def test_zip_leaves_out_the_on_call_tool_and_its_dependencies(zip_names: list[str]) -> None:
    assert not [name for name in zip_names if name.startswith("functions/cli/")]
    assert not [name for name in zip_names if name.startswith(("boto3/", "botocore/"))]
    # Chalice's runtime module is the only part of chalice a Lambda needs (the API's app object).
    chalice = {name for name in zip_names if name.startswith("chalice/") and "__pycache__" not in name}
    assert chalice <= {"chalice/__init__.py", "chalice/app.py", "chalice/app.pyi", "chalice/py.typed"}
