"""The local stack: PostgreSQL from a pip wheel, moto's S3 server and an SMTP sink.

Everything the tests and the demo need, started without Docker, AWS or root setup.
"""

from devstack.stack import LocalStack, StackEndpoints, local_stack

__all__ = ["LocalStack", "StackEndpoints", "local_stack"]
