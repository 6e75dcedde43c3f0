"""``python -m drills <name> [options]`` — see drills/README.md."""

from __future__ import annotations

import importlib
import sys

DRILLS = ("crash", "db_outage", "redis_outage", "lost_response", "soak")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in (*DRILLS, "all"):
        print(f"usage: python -m drills {{{','.join(DRILLS)},all}} [options]", file=sys.stderr)
        return 2
    names = DRILLS if argv[0] == "all" else (argv[0],)
    status = 0
    for name in names:
        module = importlib.import_module(f"drills.{name}")
        status |= module.main(argv[1:] if len(names) == 1 else [])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
