"""Every mutation scope, measured and recorded: what `tox -e mutation` runs (hours on 2 CPU cores).

    python tests/mutation/run.py [--scope LABEL ...]

1. `mutmut run` over the fully measured scopes (by their name patterns; this also generates every
   mutant of the files `[tool.mutmut] only_mutate` names);
2. `mutmut run` over the seeded random sample of each sampled scope (`report.py --names`);
3. `tests/mutation/constants.py --record` (the protocol constants mutmut cannot mutate);
4. `report.py --record` (each fully measured scope's score with its commit), then
   `report.py --stored --write-docs` (the table in docs/mutation-testing.md).

Commit the code first: a scope whose files have uncommitted changes is not recorded.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402  (tests/mutation/report.py)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scope", action="append", help="only scopes whose label contains this")
    args = parser.parse_args(argv)
    chosen = [s for s in report.SCOPES if not args.scope or any(x in s.label for x in args.scope)]
    mutmut = [sys.executable, "-m", "mutmut", "run"]
    full = [p for s in chosen if s.runner == "mutmut" and not s.sample for p in s.patterns]
    if full:
        subprocess.run([*mutmut, *full], cwd=report.ROOT, check=False)
    sampled = [s for s in chosen if s.runner == "mutmut" and s.sample]
    if sampled:
        codes = report.results()
        if not codes:
            raise SystemExit("no mutants generated yet: run a fully measured scope first (or all scopes)")
        names = [n for s in sampled for n in report.scope_mutants(s, codes)]
        subprocess.run([*mutmut, *names], cwd=report.ROOT, check=False)
    if any(s.runner == "constants" for s in chosen):
        subprocess.run([sys.executable, str(HERE / "constants.py"), "--record"], cwd=report.ROOT, check=False)
    labels = [arg for s in chosen if s.runner == "mutmut" for arg in ("--scope", s.label)]
    recorded = report.main(["--record", *labels]) if labels else 0
    return recorded | report.main(["--stored", "--write-docs"])


if __name__ == "__main__":
    raise SystemExit(main())
