"""The DynamoDB-stream-triggered evaluator."""
