"""What RFC 8785 canonical bytes cost on the hub's hot path (PROTOCOL.md §5).

    python -m bench.canonical [--number 50000]

Times the canonical bytes of the worked-example prediction (floats, non-ASCII) and of a
receipt (seven strings): ``sdk.canonical.canonical_json`` (orjson fast path), its
written-out reference, the ``rfc8785`` package, and the definition it replaced
(``json.dumps`` with sorted keys), which is the reference the ratios are against. Best
of five repeats, microseconds per call.
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from typing import Any

import rfc8785

from sdk.canonical import canonical_json, reference_canonical_json

PREDICTION = {
    "prediction_id": "6f1c2b0e-8d4a-4f3e-9a51-2c7d9e0b4a17", "game_id": "example-laliga-002",
    "miner_uid": 17, "prediction_date": "2030-08-16T18:30:00Z", "predicted_outcome": 0,
    "predicted_odds": 2.4, "team_a": "Atlético Madrid", "team_b": "Sevilla", "wager": 25.0,
    "team_a_odds": 2.4, "team_b_odds": 3.1, "tie_odds": 3.25, "model_name": "value-kelly",
    "confidence_score": 0.62}
RECEIPT = {
    "prediction_id": "6f1c2b0e-8d4a-4f3e-9a51-2c7d9e0b4a17", "status": "accepted",
    "code": "ok", "message": "accepted", "received_at_ns": "1913222400123456789",
    "miner_hotkey": "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
    "validator_hotkey": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"}


def python_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def best_us(function: Callable[[Any], bytes], obj: Any, number: int) -> float:
    return min(timeit.repeat(lambda: function(obj), number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=50_000)
    args = parser.parse_args()
    candidates: list[tuple[str, Callable[[Any], bytes]]] = [
        ("json.dumps (old definition)", python_json),
        ("sdk.canonical.canonical_json", canonical_json),
        ("reference_canonical_json", reference_canonical_json),
        ("rfc8785 package", rfc8785.dumps),
    ]
    for label, obj in (("prediction", PREDICTION), ("receipt", RECEIPT)):
        base = best_us(python_json, obj, args.number)
        print(f"{label}:")
        for name, function in candidates:
            took = best_us(function, obj, args.number)
            print(f"  {name:30s} {took:6.2f} us  {took / base:5.2f}x")
        sdk_ratio = best_us(canonical_json, obj, args.number) / base
        print(f"RATIO canonical.vs_json_dumps[{label}] = {sdk_ratio:.2f}")


if __name__ == "__main__":
    main()
