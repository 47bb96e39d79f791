"""python -m deploy mwaa ... | python -m deploy local ...

One entry point for both deployments: Amazon MWAA (deploy/mwaa) and the local stack
(deploy/local).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv[:1] == ["mwaa"]:
        from deploy.mwaa.cli import main as mwaa

        return mwaa(argv[1:])
    if argv[:1] == ["local"]:
        from deploy.local.__main__ import main as local

        return local(argv[1:])
    print("usage: python -m deploy {mwaa,local} ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
