"""python -m deploy mwaa ...

The deployment's entry point (deploy/mwaa). The local stack is `python -m devstack`.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["mwaa"]:
        from deploy.mwaa.cli import main as mwaa

        return mwaa(argv[1:])
    print(
        "usage: python -m deploy mwaa ... (the local stack is python -m devstack)", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
