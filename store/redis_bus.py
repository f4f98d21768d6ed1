"""The event bus over a Redis Stream, so the engine and the API can run as separate processes.

Each event is one stream entry whose id is `<seq>-0`: a Lua script takes the next number from
a counter and appends the entry in one step, so every publisher (engine, API) shares one
increasing sequence and `Last-Event-ID` is that number. The stream keeps the last `maxlen`
entries; a reader that resumes from before them first gets a `gap` notice, like the
in-process bus.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import redis
import redis.asyncio as aioredis

from store.bus import DEFAULT_RING_SIZE
from store.journal import json_default

__all__ = ["DEFAULT_STREAM", "RedisBus"]

log = logging.getLogger(__name__)

DEFAULT_STREAM = "lxa:events"
_FIELD = "event"
_PUBLISH = """
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], seq .. '-0', 'event', ARGV[1])
return seq
"""


def _dumps(event: Mapping[str, Any]) -> str:
    return json.dumps(dict(event), default=json_default, ensure_ascii=False, separators=(",", ":"))


def _seq_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


class RedisBus:
    """An `EventBus` on a Redis Stream (`XADD` to publish, `XREAD BLOCK` to follow).

    `publish` is synchronous, one round trip to Redis; when Redis refuses, the event is logged
    and dropped from the stream (the journal still holds what the engine records) and 0 is
    returned, so trading never stops for the viewer.
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = DEFAULT_RING_SIZE,
        block_ms: int = 5_000,
        read_count: int = 500,
    ) -> None:
        if maxlen < 1 or block_ms < 1 or read_count < 1:
            raise ValueError("maxlen, block_ms and read_count must be >= 1")
        self.url = url
        self.stream = stream
        self.counter = f"{stream}:seq"
        self._maxlen = maxlen
        self._block_ms = block_ms
        self._read_count = read_count
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._publish = self._client.register_script(_PUBLISH)

    def ping(self) -> None:
        """Raise `redis.RedisError` when Redis does not answer."""
        self._client.ping()

    @property
    def last_seq(self) -> int:
        """The seq of the newest published event (0 before the first)."""
        value = self._client.get(self.counter)
        return int(value) if value is not None else 0

    def publish(self, event: Mapping[str, Any]) -> int:
        """Append `event` to the stream and return its seq (0 when Redis refused it)."""
        payload = {key: value for key, value in event.items() if key != "seq"}
        try:
            seq = self._publish(
                keys=[self.stream, self.counter], args=[_dumps(payload), self._maxlen]
            )
        except redis.RedisError as exc:
            log.warning("event %s not published to Redis: %s", event.get("type"), exc)
            return 0
        return int(seq)

    def close(self) -> None:
        """Release the publishing connection."""
        self._client.close()

    async def subscribe(self, after_seq: int | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the kept events with seq > `after_seq`, then live ones, each exactly once.

        `after_seq=None` means live events only. Events trimmed before they were read are
        announced by `{"type": "gap", "after_seq": ..., "first_seq": ...}` (no seq).
        """
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2)
        try:
            if after_seq is None:
                current = await client.get(self.counter)
                last = int(current) if current is not None else 0
            else:
                last = after_seq
            while True:
                reply: Any = await client.xread(
                    {self.stream: f"{last}-0"}, count=self._read_count, block=self._block_ms
                )
                for _stream, entries in reply or []:
                    for entry_id, fields in entries:
                        seq = _seq_of(entry_id)
                        if seq > last + 1:  # trimmed before this reader got to them
                            yield {"type": "gap", "after_seq": last, "first_seq": seq}
                        raw = fields.get(_FIELD.encode()) or fields.get(_FIELD)
                        event = json.loads(raw)
                        event["seq"] = seq
                        last = seq
                        yield event
        finally:
            await client.aclose()
