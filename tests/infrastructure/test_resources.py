"""`infrastructure.resources` builds, from the template, tables and queues the code can use."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from functions.settings import load_settings
from functions.storage.models import DeliveryModel, PostbackModel
from infrastructure.resources import create_all

pytestmark = pytest.mark.infrastructure


def test_created_tables_and_queues_follow_the_template_under_the_configured_names() -> None:
    with mock_aws():
        dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        created = create_all(dynamodb, sqs, load_settings())
        assert set(created.tables.values()) == {"postbacks", "postback-deliveries", "conversions"}
        deliveries = dynamodb.describe_table(TableName="postback-deliveries")["Table"]
        assert {i["IndexName"] for i in deliveries["GlobalSecondaryIndexes"]} == {"by_postback", "by_dead_letter"}
        ttl = dynamodb.describe_time_to_live(TableName="postback-deliveries")["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "expires_at"
        conversions = dynamodb.describe_table(TableName="conversions")["Table"]
        assert conversions["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert created.conversions_stream_arn == conversions["LatestStreamArn"]
        attributes = sqs.get_queue_attributes(QueueUrl=created.queue_urls["DeliveriesQueue"], AttributeNames=["All"])[
            "Attributes"
        ]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith(":postback-deliveries-dlq")
        assert attributes["VisibilityTimeout"] == "180"
        # The pynamodb models work against them as they are.
        assert PostbackModel.count() == 0 and DeliveryModel.count() == 0


def test_creating_twice_is_harmless() -> None:
    with mock_aws():
        dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        first = create_all(dynamodb, sqs, load_settings())
        second = create_all(dynamodb, sqs, load_settings())
        assert first == second
