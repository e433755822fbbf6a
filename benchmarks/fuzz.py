"""A long fuzz of the spec loader: mutated YAML specs must load or fail with a SpecError, fast.

    python benchmarks/fuzz.py [--specs 100000] [--seed 0] [--per-spec 2]

Counts accepted / refused specs, tracebacks (any other exception) and hangs (a spec taking longer
than --per-spec seconds), prints the first few offenders, the slowest spec and the peak RSS.
Exit 1 when any traceback or hang was found. `make fuzz` runs it.
"""

from __future__ import annotations

import argparse
import random
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lossctl.errors import SpecError
from lossctl.spec import load_specs
from tests.spec_fuzz import mutate


class Hang(BaseException):
    pass


def on_alarm(signum: int, frame: object) -> None:
    raise Hang


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-spec", type=float, default=2.0, help="seconds before a spec counts as a hang")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, on_alarm)
    rng = random.Random(args.seed)
    counts = {"accepted": 0, "refused": 0, "traceback": 0, "hang": 0}
    offenders: list[tuple[str, str]] = []
    slowest = (0.0, "")
    started = time.perf_counter()
    for _ in range(args.specs):
        text = mutate(rng)
        began = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, args.per_spec)
        try:
            load_specs(text, source="fuzz.yaml")
            counts["accepted"] += 1
        except SpecError:
            counts["refused"] += 1
        except Hang:
            counts["hang"] += 1
            offenders.append(("hang", text))
        except Exception:
            counts["traceback"] += 1
            offenders.append((traceback.format_exc(limit=3), text))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        took = time.perf_counter() - began
        if took > slowest[0]:
            slowest = (took, text)
    total = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.specs:,} mutated specs in {total:.1f} s ({args.specs / total:,.0f}/s), seed {args.seed}")
    print(", ".join(f"{k}: {v:,}" for k, v in counts.items()))
    print(f"slowest spec: {slowest[0] * 1e3:.1f} ms · peak RSS {peak_mib:.0f} MiB")
    for what, text in offenders[:5]:
        print(f"--- {what}\n{text!r}")
    return 1 if counts["traceback"] or counts["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
