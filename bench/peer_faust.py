"""The framework floor: a minimal Faust app whose one agent only counts the input records.

usage: BENCH_PREFIX=P BENCH_EXPECT=N BENCH_OUT=result.json BENCH_DATADIR=dir \\
       python bench/peer_faust.py worker -l warn

One agent on `<P>product-events` and `<P>survey-answers` (raw keys and values, no table, no
web server), consumer group `<P>faust-floor`, from the earliest offset. When it has counted N
records it writes {records, first, last, rss_peak} to BENCH_OUT (`first`/`last`: the wall-clock
instants of the first and the N-th record); the caller then stops the process.
"""

from __future__ import annotations

import json
import os
import resource
import time
from typing import Any

import faust

PREFIX = os.environ["BENCH_PREFIX"]
EXPECT = int(os.environ["BENCH_EXPECT"])
OUT = os.environ["BENCH_OUT"]

app = faust.App(
    f"{PREFIX}faust-floor",
    broker=f"kafka://{os.environ.get('KAFKA_BOOTSTRAP', '127.0.0.1:9092')}",
    store="memory://",
    datadir=os.environ.get("BENCH_DATADIR", "/tmp/faust-floor"),
    topic_partitions=int(os.environ.get("BENCH_PARTITIONS", "8")),
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
)
source = app.topic(
    f"{PREFIX}product-events", f"{PREFIX}survey-answers", key_type=bytes, value_type=bytes
)
seen = {"n": 0, "first": 0.0}


@app.agent(source)
async def count(stream: Any) -> None:
    async for _value in stream:
        n = seen["n"] = seen["n"] + 1
        if n == 1:
            seen["first"] = time.time()
        if n == EXPECT:
            result = {"records": n, "first": seen["first"], "last": time.time(),
                      "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}  # fmt: skip
            with open(OUT + ".tmp", "w") as fh:
                json.dump(result, fh)
            os.replace(OUT + ".tmp", OUT)


if __name__ == "__main__":
    app.main()
