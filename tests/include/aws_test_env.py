"""The aws-target environment the request-builder tests share: fake ids in moto's account,
valid in form (config validates them), never sent anywhere."""

KMS_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
AWS_ENV = {
    "PIPELINE_TARGET": "aws",
    "AWS_REGION": "eu-west-1",
    "HEADRACE_BUCKET": "headrace-test-lake",
    "HEADRACE_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-sagemaker",
    "HEADRACE_GLUE_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-glue",
    "HEADRACE_EMR_SERVERLESS_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-emr",
    "HEADRACE_KMS_KEY_ARN": KMS_KEY_ARN,
    "HEADRACE_SUBNET_IDS": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    "HEADRACE_SECURITY_GROUP_IDS": "sg-0123456789abcdef0",
    "HEADRACE_PII_SALT_SECRET_ARN": (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:headrace/pii-salt-AbCdEf"
    ),
}
