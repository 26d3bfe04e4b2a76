"""Pure rules: no boto3, pynamodb or requests in this package."""
