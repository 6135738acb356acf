"""Privacy mode: the subject of a message is a keyed hash of the caller's number, not the number.

Rules:

- ``subject = hex(HMAC-SHA256(privacy_key, "callshield/v1/subject\\n" + E.164))[:32]``: 32 lowercase
  hex digits (128 bits). Every node of the cluster holds the same privacy key, so a node that sees
  ``+14155550123`` computes the same subject as the peer that reported it and can match it; the
  broker and an eavesdropper, without the key, cannot test candidate numbers (the E.164 space is
  small enough to enumerate, which is why a plain unkeyed hash would not hide anything).
- Collisions: 128 bits. All the numbers the plan allows (fewer than 10**15 < 2**50) give a
  collision with probability below n**2 / 2**129 < 2**-29 (birthday bound), so two numbers never
  share a subject in practice, and an attacker without the key cannot aim for one.
- The privacy key is separate from the signing keys: signing keys rotate, while changing the
  privacy key changes every subject (peers then stop matching older messages until they expire).
- In privacy mode the number appears nowhere in the message: topics hold only cluster and node
  names, and the payload has no other field derived from a number.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from callshield.mesh._message import E164

__all__ = ["SUBJECT_HEX_LENGTH", "subject_for"]

SUBJECT_HEX_LENGTH: Final = 32
_DOMAIN: Final = b"callshield/v1/subject\n"


def subject_for(e164: str, privacy_key: bytes) -> str:
    """The privacy-mode subject of an E.164 number; ValueError if ``e164`` is not one (``+`` and digits)."""
    if not E164.fullmatch(e164):
        raise ValueError("not an E.164 number")
    if len(privacy_key) < 32:
        raise ValueError("the privacy key must be at least 32 bytes")
    digest = hmac.new(privacy_key, _DOMAIN + e164.encode("ascii"), hashlib.sha256).hexdigest()
    return digest[:SUBJECT_HEX_LENGTH]
