"""Deterministic payloads shared by the peers: the same (seed, size) gives the
same bytes in every process, so each side can check what the other sent."""

import hashlib
import random
import threading

MAX_SIZE = 256 * 1024 * 1024

_cache: dict[tuple[int, int], bytes] = {}
_lock = threading.Lock()


def payload(size: int, seed: int = 0) -> bytes:
    if size < 0 or size > MAX_SIZE:
        raise ValueError(f"size {size} out of range 0..={MAX_SIZE}")
    key = (seed, size)
    with _lock:
        data = _cache.get(key)
        if data is None:
            data = random.Random(f"mcp-warden-tests:{seed}:{size}").randbytes(size)
            if size <= 64 * 1024 * 1024:
                _cache[key] = data
        return data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
