"""Do sr25519 signing and verifying (bittensor's ``Keypair``, native code in
``bittensor_core``) release the GIL? If they did, a thread pool would let the hub
verify and sign on several cores.

    python -m bench.sr25519_gil [--ops 6000]

Two measurements per operation: N ops in one thread against N ops in each of two
threads at once (with the GIL released, two cores finish both in about the time of
one: speedup ~2; held, ~1), and a pure-Python counter thread beside a loop of the
operation (released: it keeps its alone rate on the other core; held: it gets about
half, the share the interpreter's switch interval gives it).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable

from bittensor.keyfiles import Keypair

MESSAGE = b'{"code":"ok","message":"accepted","prediction_id":"' + b"x" * 300 + b'"}'


def timed(work: Callable[[], None], threads: int) -> float:
    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def spinner_rate(seconds: float, beside: Callable[[], None] | None) -> float:
    """Counts per second of a Python loop, alone or while ``beside`` runs."""
    stop = threading.Event()
    counts: list[int] = []

    def spin() -> None:
        count = 0
        while not stop.is_set():
            count += 1
        counts.append(count)

    thread = threading.Thread(target=spin)
    start = time.perf_counter()
    thread.start()
    if beside is None:
        time.sleep(seconds)
    else:
        beside()
    stop.set()
    thread.join()
    return counts[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sr25519_gil", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=6000)
    args = parser.parse_args()
    key = Keypair.create_from_seed(bytes(range(32)))
    public = Keypair(ss58_address=key.ss58_address)
    signature = key.sign(MESSAGE)
    operations: dict[str, Callable[[], object]] = {
        "sign": lambda: key.sign(MESSAGE),
        "verify": lambda: public.verify(MESSAGE, signature),
    }
    print(f"cores available: {len(os.sched_getaffinity(0))}")
    for name, operation in operations.items():
        def loop(count: int = args.ops, operation: Callable[[], object] = operation) -> None:
            for _ in range(count):
                operation()

        one = timed(loop, 1)
        two = timed(loop, 2)
        alone = spinner_rate(one, None)
        beside = spinner_rate(one, loop)
        print(f"{name}: {one / args.ops * 1e6:.1f} us/op; 2 threads x {args.ops} ops in "
              f"{two:.3f} s vs {2 * one:.3f} s one after the other: speedup "
              f"{2 * one / two:.2f} (GIL released: ~2)")
        print(f"  a Python thread beside it runs at {beside / alone:.2f} of its alone rate "
              f"(GIL released: ~1)")


if __name__ == "__main__":
    main()
