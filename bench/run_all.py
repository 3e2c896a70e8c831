"""Run every benchmark in sequence and repeat their verdict lines at the end.

    python -m bench.run_all            # the full set (several minutes)
    python -m bench.run_all --quick    # every benchmark's quick mode (~40 s)

Full set: fan-out with 1000 and with 256 miners (50 burst updates, with and without
permessage-deflate), memory with 1000 idle connections, predictions with 50 miners
for 10 s (hub with synchronous FULL and NORMAL, with its own store and beside a
Bettensor validator, without and with the validator writing to the same file), the
client with 100 connections (CPU per received update and memory, SDK vs bare).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

from bench import client, common, fanout, memory, predictions

FULL = [
    ("fanout-1000", fanout.main, ["--miners", "1000", "--updates", "50"]),
    ("fanout-256", fanout.main, ["--miners", "256", "--updates", "50"]),
    ("memory-1000", memory.main, ["--miners", "1000", "--compress", "both"]),
    # issue 11's targets: CPU per prediction with and without the miners' signatures
    ("predictions-lean", predictions.main, ["--miners", "50", "--seconds", "10", "--sync",
                                            "full", "--miner-signature", "both"]),
    ("predictions-50", predictions.main, ["--miners", "50", "--seconds", "10",
                                          "--book", "both"]),
    ("client-100", client.main, ["--clients", "100", "--updates", "500", "--rounds", "3"]),
]

QUICK = {"predictions-50": ["--quick", "--book", "both", "--sync", "full"]}
"""Quick-mode arguments where ``--quick`` alone is not all of it."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="each benchmark's quick mode")
    parser.add_argument("--rounds", type=int, default=1, help="fan-out rounds (median)")
    parser.add_argument("--json-dir", help="write each benchmark's results here as JSON")
    args = parser.parse_args(argv)
    results = {}
    started = time.perf_counter()
    for name, run, bench_args in FULL:
        if args.quick:
            if name.endswith("-256") or name == "predictions-lean":
                continue
            bench_args = QUICK.get(name, ["--quick"])
        elif run is fanout.main:
            bench_args = [*bench_args, "--rounds", str(args.rounds)]
        print(f"\n######## {name}: python -m bench.{run.__module__.rsplit('.', 1)[-1]} "
              f"{' '.join(bench_args)}", flush=True)
        results[name] = run(bench_args)
        if args.json_dir:
            Path(args.json_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.json_dir) / f"{name}.json").write_text(
                json.dumps(results[name], indent=2, sort_keys=True, default=str) + "\n")
    print(f"\n######## summary ({time.perf_counter() - started:.0f} s)")
    for line in common.VERDICTS:
        print(line)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
