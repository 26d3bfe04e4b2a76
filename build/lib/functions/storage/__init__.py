"""pynamodb models, repositories and the SQS adapter."""
