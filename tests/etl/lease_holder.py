"""A process that holds a stage's lease for the lease tests: `python -m tests.etl.lease_holder
<stage>` takes it, prints `held <generation>`, waits for a line on stdin, then checks the
lease as a commit point would and prints `still held` (exit 0) or the error (exit 75)."""

from __future__ import annotations

import os
import sys

from etl.config import Settings
from etl.errors import EXIT_LEASE, LeaseError
from etl.lease import LeaseTerms, hold


def main(stage: str) -> int:
    settings = Settings.from_env(os.environ)
    with hold(LeaseTerms.of(settings), stage) as lease:
        print(f"held {lease.generation}", flush=True)
        sys.stdin.readline()
        try:
            lease.check("the test's commit")
        except LeaseError as error:
            print(f"error: {error}", flush=True)
            return EXIT_LEASE
        print("still held", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
