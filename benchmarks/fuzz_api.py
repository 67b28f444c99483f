"""The long fuzzing run: the test suite's fuzzers with many more examples, new ones each run.

Runs, in a child pytest,

* ``tests/test_fuzz_api.py`` (schemathesis on the app's own OpenAPI schema, every operation as
  every role and anonymously) with ``--examples`` requests per operation and caller (CI: 6), and
* unless ``--api-only``, the hypothesis properties of the parsers and of the watchlist file
  (``tests/test_fuzz_parsers.py``, ``tests/test_fuzz_watchlist_file.py``) under the ``long``
  profile (2,000 examples each; CI: 100).

Each run draws new examples (``--seed`` to repeat one); a failure prints the request to
reproduce it (curl) or hypothesis's minimal example. At the end: how often each operation
answered each status, per caller, so that operations the fuzzer never got past validation show
up. Nothing here needs ../shared/data.

    python benchmarks/fuzz_api.py --examples 500
    python benchmarks/fuzz_api.py --examples 100 --seed 7 -k "deployments"   # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
API = "tests/test_fuzz_api.py"
PROPERTIES = ["tests/test_fuzz_parsers.py", "tests/test_fuzz_watchlist_file.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=500,
                        help="requests per operation and caller (default 500)")
    parser.add_argument("--seed", type=int, default=None,
                        help="draw the examples of this seed (default: a new one, printed)")
    parser.add_argument("--api-only", action="store_true", help="skip the parser properties")
    parser.add_argument("-k", dest="keyword", default=None,
                        help="only the tests whose names match (pytest -k)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "answers.json"
        env = dict(os.environ, OPENLFR_FUZZ_EXAMPLES=str(args.examples),
                   OPENLFR_FUZZ_SEED=str(seed), OPENLFR_FUZZ_REPORT=str(report))
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        tests = [API] if args.api_only else [API, *PROPERTIES]
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "--hypothesis-profile", "long", f"--hypothesis-seed={seed}",
                   "--durations", "10", *tests]
        if args.keyword:
            command += ["-k", args.keyword]
        print(f"fuzz: {args.examples} examples per operation and caller, seed {seed}",
              flush=True)
        start = time.monotonic()
        code = subprocess.call(command, cwd=ROOT, env=env)
        elapsed = time.monotonic() - start
        answers = json.loads(report.read_text()) if report.exists() else {}
    print_answers(answers)
    print(json.dumps({"benchmark": "fuzz_api", "examples": args.examples, "seed": seed,
                      "seconds": round(elapsed, 1), "pytest_exit": code,
                      "requests": sum(n for callers in answers.values()
                                      for counts in callers.values()
                                      for n in counts.values())}))
    return code


def print_answers(answers: dict[str, dict[str, dict[str, int]]]) -> None:
    if not answers:
        return
    print("\nanswers per operation (caller: status x count):")
    for operation, callers in sorted(answers.items()):
        print(f"  {operation}")
        for caller, counts in sorted(callers.items()):
            shown = ", ".join(f"{status} x{n}" for status, n in sorted(counts.items()))
            print(f"      {caller:<20} {shown}")


if __name__ == "__main__":
    sys.exit(main())
