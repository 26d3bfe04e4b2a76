"""The SQS-triggered sender."""
