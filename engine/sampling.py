"""How generation may choose each character: greedy, or a seeded draw at a temperature from the top k.

Pure Python, so the console can refuse a bad value in one line before anything is sent; the engine
checks the same bounds again for any request that reaches it.
"""

from __future__ import annotations

import math

# Below the lowest temperature sampling is greedy in all but name, above the highest it is uniform;
# beyond them logits / temperature overflows to inf (or every logit rounds to 0) and the draw fails.
TEMPERATURES = (1e-2, 1e2)
MAX_SEED = 2**64 - 1  # torch's generators take 64-bit seeds


def check_sampling(temperature: float, top_k: int, seed: int | None = None) -> None:
    """ValueError with one line when these are not a way to choose characters."""
    low, high = TEMPERATURES
    if not (temperature == 0 or low <= temperature <= high):  # NaN fails both
        shown = f"{temperature:g}" if isinstance(temperature, float) and math.isfinite(temperature) else temperature
        raise ValueError(f"the temperature must be 0 (greedy) or between {low:g} and {high:g}, not {shown}")
    if top_k < 0:
        raise ValueError(f"top-k must be 0 (all characters) or positive, not {top_k}")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ValueError(f"the seed must be between 0 and 2**64-1 (torch's seeds are 64-bit), not {seed}")
