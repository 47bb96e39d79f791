"""The S3 endpoint the pipeline sees goes down and comes back, while moto keeps its data."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from devstack.stack import MOTO_CREDENTIALS, REGION, StackEndpoints
from soak.proxy import TcpProxy


def test_cut_refuses_connections_and_restore_serves_the_same_buckets(stack: StackEndpoints) -> None:
    proxy = TcpProxy(stack.s3_port)
    proxy.start()
    s3 = boto3.client(
        "s3",
        endpoint_url=proxy.url,
        region_name=REGION,
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}),
    )
    try:
        assert s3.head_bucket(Bucket=stack.ingestion_bucket)  # through the proxy

        proxy.cut()
        with pytest.raises(EndpointConnectionError):
            s3.head_bucket(Bucket=stack.ingestion_bucket)

        proxy.restore()
        assert s3.head_bucket(Bucket=stack.ingestion_bucket)
    finally:
        proxy.close()
        s3.close()
