"""The Kafka Streams peer (Java, bench/kafka_streams/): build it and run it like the other peers.

usage: BENCH_PREFIX=P BENCH_EXPECT=N BENCH_STATE=dir python bench/peer_kstreams.py
       (builds with bench/kafka_streams/build.sh if needed, then runs the JVM; prints its one
       JSON line: records, first, last, cpu_first, cpu_last, partitions)

`build()` runs bench/kafka_streams/build.sh (Maven resolves the jars into ~/.m2 once; javac);
`command(classpath)` is the java command line. Settings come from the environment (README.md in
bench/, "The expert peers"): BENCH_THREADS (stream threads, default one per core), BENCH_CACHE_MB (record
cache, default 64), BENCH_DUMP, BENCH_TIMEOUT.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "kafka_streams" / "build.sh"
MAIN = "bench.PeerKafkaStreams"


def build(timeout: float = 600) -> str:
    """Build (or reuse) the peer; returns the classpath. Raises RuntimeError with the log tail."""
    r = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"bench/kafka_streams/build.sh failed ({r.returncode}):\n{r.stderr}")
    return r.stdout.strip().splitlines()[-1]


def command(classpath: str) -> list[str]:
    return [
        "java",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-Dorg.slf4j.simpleLogger.logFile=System.err",
        "-cp",
        classpath,
        MAIN,
    ]


def main() -> int:
    cp = build()
    os.execvp("java", command(cp))
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
