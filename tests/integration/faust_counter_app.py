"""A minimal Faust app for tests/integration/test_faust_app.py (run as a `faust worker`).

It counts records per key in a table (RocksDB store, changelog topic on the broker) and, for
each record, sends the key's new count to a sink topic, so the test can watch the table from
outside. Configured through the environment:

  COUNTER_APP_ID       Faust app id (also the consumer group and the changelog's prefix)
  COUNTER_SOURCE       topic read (created beforehand, COUNTER_PARTITIONS partitions)
  COUNTER_SINK         topic written: key -> count as ASCII digits
  COUNTER_DATADIR      the app's data directory (the RocksDB files)
  COUNTER_PARTITIONS   partitions of the source (and so of the table's changelog)
  COUNTER_STORE        table store URL (default rocksdb://)
  KAFKA_BOOTSTRAP      broker (default 127.0.0.1:9092)
"""

from __future__ import annotations

import os
from typing import Any

import faust

PARTITIONS = int(os.environ.get("COUNTER_PARTITIONS", "8"))

app = faust.App(
    os.environ["COUNTER_APP_ID"],
    broker=f"kafka://{os.environ.get('KAFKA_BOOTSTRAP', '127.0.0.1:9092')}",
    store=os.environ.get("COUNTER_STORE", "rocksdb://"),
    datadir=os.environ["COUNTER_DATADIR"],
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    key_serializer="raw",
    value_serializer="json",  # the table's counts
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    # Commit often so a graceful stop leaves little to redeliver.
    broker_commit_interval=0.5,
)

source = app.topic(
    os.environ["COUNTER_SOURCE"], key_type=bytes, value_type=bytes, value_serializer="raw"
)
sink = app.topic(
    os.environ["COUNTER_SINK"], key_type=bytes, value_type=bytes, value_serializer="raw"
)
counts = app.Table(
    "counts",
    default=int,
    partitions=PARTITIONS,
    key_type=bytes,
    value_type=int,
)


@app.agent(source)
async def count(stream: Any) -> None:
    async for key, _value in stream.items():
        counts[key] += 1
        await sink.send(key=key, value=str(counts[key]).encode())
