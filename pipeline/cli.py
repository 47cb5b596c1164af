"""Not built yet: see the open issues."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("facesim: this command is not built yet (see the open issues)", file=sys.stderr)
    return 2
