"""Realistic sample events, for the demo, the benchmarks and the tests."""

from __future__ import annotations

import json
import random
from typing import List

METRICS = {"api_calls": (1, 1), "tokens": (50, 4000), "storage_gb_hours": (0.25, 12.0), "deploys": (1, 1)}
LICENSES = ("lic_acme_prod", "lic_globex_std", "lic_initech_trial")
MODELS = ("gpt-4o", "claude-sonnet", "llama-3-70b")
SERVICES = ("billing-worker", "api-gateway", "nightly-export")

# Lines a real producer gets wrong, each with the reason doow-track gives.
INVALID = (
    b'{"metric":"tokens","quantity":"512","license_id":"lic_acme_prod"}',
    b'{"metric":"api_calls","quantity":1,"licence_id":"lic_acme_prod"}',
    b'{"metric":"deploys","quantity":-1,"license_id":"lic_globex_std"}',
    b'{"metric":"api_calls","quantity":1,"license_id":"lic_acme_prod","metadata":{"auth":"Bearer abc.def.ghi-123"}}',
    b'{"metric":"tokens","quantity":12,"license_id":"lic_initech_trial"',
)


def event(rng: random.Random) -> dict:
    """One plausible usage event."""
    metric = rng.choice(list(METRICS))
    low, high = METRICS[metric]
    quantity = rng.randint(int(low), int(high)) if isinstance(low, int) else round(rng.uniform(low, high), 2)
    line: dict = {"metric": metric, "quantity": quantity, "license_id": rng.choice(LICENSES),
                  "attribution": {"service": rng.choice(SERVICES)}}
    if metric == "tokens":
        line["unit"] = "tokens"
        line["attribution"]["model"] = rng.choice(MODELS)
    return line


def lines(count: int, seed: int = 7, invalid_every: int = 0) -> List[bytes]:
    """``count`` valid lines, with one of INVALID inserted every ``invalid_every`` lines."""
    rng = random.Random(seed)
    out: List[bytes] = []
    for index in range(count):
        if invalid_every and index and index % invalid_every == 0:
            out.append(INVALID[(index // invalid_every - 1) % len(INVALID)])
        out.append(json.dumps(event(rng), separators=(",", ":")).encode())
    return out
