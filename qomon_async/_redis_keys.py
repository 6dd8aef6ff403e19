"""Where a space's shared state lives in Redis: key names derived without the API key.

A space is identified by its base URL and its API key. The key itself never reaches Redis, a
log line or a repr: the client hashes it (:func:`key_hash`), and the bucket derives the space's
id from the base URL and that hash (:func:`space_id`). Every key of a space shares the hash tag
``{<space id>}``, so that a Redis Cluster keeps them on one node (a Lua script touches one).
"""

from __future__ import annotations

import hashlib

__all__ = [
    "DEFAULT_PREFIX",
    "bucket_key",
    "in_doubt_key",
    "key_hash",
    "members_key",
    "space_id",
]

#: The default prefix of every key the shared bucket writes.
DEFAULT_PREFIX = "qomon"


def key_hash(api_key: str) -> str:
    """A one-way digest of an API key (hex), to tell spaces apart without storing the key."""
    return hashlib.sha256(b"qomon-async:api-key\x00" + api_key.encode()).hexdigest()


def space_id(base_url: str, api_key_hash: str) -> str:
    """The id of a space (32 hex digits) from its base URL and :func:`key_hash` of its key."""
    text = f"{base_url.rstrip('/').lower()}\n{api_key_hash}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def bucket_key(prefix: str, space: str) -> str:
    """The hash that holds the space's bucket."""
    return f"{prefix}:{{{space}}}:bucket"


def members_key(prefix: str, space: str) -> str:
    """The hash of the processes sharing the space's bucket: each one's share so far."""
    return f"{prefix}:{{{space}}}:members"


def in_doubt_key(prefix: str, space: str, identity: str) -> str:
    """The record of one in-doubt create (``identity`` is a digest, never a mail)."""
    return f"{prefix}:{{{space}}}:indoubt:{identity}"
