"""Postbacks: affiliate postback tracking events on AWS (Chalice, DynamoDB, SQS)."""

__version__ = "1.0.0"
