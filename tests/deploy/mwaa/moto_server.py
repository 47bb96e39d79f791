"""`python -m tests.deploy.mwaa.moto_server -H HOST -p PORT`: moto's server for the
deployment tests, with one emulator gap closed.

moto applies bucket policies but ignores their Conditions (its `put_bucket_policy` docstring
says so), so the TLS-only policy (Deny s3:* when aws:SecureTransport is false) would deny
every object request. On AWS the condition is evaluated; here bucket policies are recorded
and returned but not enforced. The tests check the policy document itself.
"""

from __future__ import annotations

import sys
from typing import Any

from moto.iam.access_control import PermissionResult
from moto.s3.models import FakeBucket
from moto.server import main


def _not_enforced(self: Any, action: str, resource: str) -> Any:
    return PermissionResult.NEUTRAL


if __name__ == "__main__":
    FakeBucket.get_permission = _not_enforced  # type: ignore[method-assign]
    main(sys.argv[1:])
