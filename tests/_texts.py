"""Text builders shared by the tests."""

from __future__ import annotations


def completion(code: str, trace: str = "Lumbar disc disorder with radiculopathy.") -> str:
    """A well-formed completion as the policy writes it after the prefilled ``<think>``."""
    return f"{trace}</think>\n<diagnosis>{code}</diagnosis>"
