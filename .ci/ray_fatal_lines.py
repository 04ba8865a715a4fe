"""After a failed `make test`: print Ray's fatal log lines written since the run started.

A Ray driver that hits a fatal RAY_CHECK (e.g. a ray.cancel racing a finishing task) exits the
pytest process at once with code 1 and no pytest summary; the reason is only in Ray's session logs
(/tmp/ray/session_*/logs). This prints those lines so a red CI says why.
Usage: python .ci/ray_fatal_lines.py <unix start time>
"""

from __future__ import annotations

import glob
import os
import re
import sys

# Ray's C++ log lines: "[2026-11-26 21:59:30,294 C 7329 20559] task_manager.cc:1329: ..." (C = fatal).
FATAL = re.compile(r"^\[[0-9-]+ [0-9:,]+ C \d+ \d+\]")


def main() -> None:
    since = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    temp = os.environ.get("RAY_TMPDIR", "/tmp/ray")
    found = 0
    for path in sorted(glob.glob(f"{temp}/session_*/logs/*")):
        if not os.path.isfile(path) or os.path.getmtime(path) < since:
            continue
        with open(path, errors="replace") as f:
            lines = f.readlines()
        for i, line in enumerate(lines):
            if FATAL.match(line):
                found += 1
                print(f"--- {path}:{i + 1}")
                print("".join(lines[i:i + 6]).rstrip())
    print(f"ray_fatal_lines: {found} fatal Ray log line(s) since the test run started")


if __name__ == "__main__":
    main()
