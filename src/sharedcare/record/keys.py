"""Fixed-width keys that stand in for long values inside search-index rows.

Both are 64-bit BLAKE2b digests (signed, to fit a ``BIGINT``), so they are the same on every
database and every process without a lookup table, and collisions are negligible: the chance
that any two of a million distinct values share a key is about 3 in 10^8. The functions must
never change: stored rows hold their results.
"""

from __future__ import annotations

from hashlib import blake2b

__all__ = ["combination_key", "system_key"]


def _digest(text: str) -> int:
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def system_key(system: str | None) -> int:
    """The key stored for a token or quantity ``system`` URI; 0 when there is none.

    https://hl7.org/fhir/R4/search.html#token: ``|code`` matches values with no system, so
    "no system" has its own key.
    """
    return _digest(system) if system else 0


def combination_key(canonical: str) -> int:
    """The key of one composite combination, from its canonical JSON text."""
    return _digest(canonical)
