"""Account lookups, cached: a username typed twice asks the backend once.

Found accounts are kept LOOKUP_CACHE_SECONDS, "not found" only
LOOKUP_NOT_FOUND_CACHE_SECONDS (a new account should appear soon); a backend
error is never cached. In-process by default; Redis (LOOKUP_CACHE_URL) shares
the cache between processes, with short timeouts and a pause after a failure
(topup.stores): a Redis that is down or hangs only costs lookups their cache.
"""
from __future__ import annotations

from cachelib import BaseCache, RedisCache, SimpleCache
from flask import current_app

from topup.delivery import AccountInfo
from topup.stores import Pause, redis_options


def _cache() -> tuple[BaseCache, Pause]:
    extensions = current_app.extensions
    if "topup.lookup_cache" not in extensions:
        url = current_app.config.get("LOOKUP_CACHE_URL")
        if url:
            import redis

            cache = RedisCache(host=redis.Redis.from_url(url, **redis_options()),
                               key_prefix="topup:lookup:")
        else:
            cache = SimpleCache(threshold=10_000)
        extensions["topup.lookup_cache"] = (cache, Pause("lookup cache", "lookups skip it"))
    return extensions["topup.lookup_cache"]


def lookup(backend, product, account_id: str) -> AccountInfo:
    """backend.lookup_account through the cache. Exceptions propagate, uncached."""
    key = f"{backend.id}:{product.id}:{account_id}"
    cache, pause = _cache()
    hit = None
    if not pause.active():
        try:
            hit = cache.get(key)
        except Exception as exc:  # a cache that is down only costs a lookup
            pause.failed(exc)
    if hit is not None:
        return AccountInfo(**hit)
    info = backend.lookup_account(product, account_id)
    config = current_app.config
    ttl = config["LOOKUP_CACHE_SECONDS"] if info.found else config["LOOKUP_NOT_FOUND_CACHE_SECONDS"]
    if not pause.active():
        try:
            cache.set(key, {"account_id": info.account_id, "found": info.found,
                            "nickname": info.nickname, "reason": info.reason}, timeout=ttl)
        except Exception as exc:
            pause.failed(exc)
    return info
