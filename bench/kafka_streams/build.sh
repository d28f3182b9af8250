#!/usr/bin/env bash
# Build the Kafka Streams peer (bench/kafka_streams/): resolve its jars from Maven Central into
# ~/.m2 and copy them to $OUT/lib (mvn dependency:copy-dependencies), compile the source with javac
# into $OUT/classes, and print the classpath to use (`java -cp "$(build.sh)" bench.PeerKafkaStreams`).
# Nothing is redone while the pom and the source are unchanged (a stamp of their hash).
# OUT: $KSTREAMS_BUILD_DIR, default .run/kafka-streams in the repository (ignored by git).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${KSTREAMS_BUILD_DIR:-$ROOT/.run/kafka-streams}"
REPO="${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}"
command -v java >/dev/null && command -v javac >/dev/null || {
    echo "build.sh: java and javac (JDK 17+) are needed" >&2; exit 1; }
command -v mvn >/dev/null || { echo "build.sh: mvn (Maven) is needed" >&2; exit 1; }

want="$(cat "$HERE/pom.xml" "$HERE"/src/main/java/bench/*.java | sha256sum | cut -c1-16)"
if [[ -f "$OUT/stamp" && "$(cat "$OUT/stamp")" == "$want" ]]; then
    echo "$OUT/lib/*:$OUT/classes"
    exit 0
fi
mkdir -p "$OUT"
rm -rf "$OUT/lib.tmp" "$OUT/classes.tmp" "$OUT/stamp"
if ! mvn -q -B -C -f "$HERE/pom.xml" -Dmaven.repo.local="$REPO" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$OUT/lib.tmp" >"$OUT/maven.log" 2>&1; then
    tail -n 30 "$OUT/maven.log" >&2
    echo "build.sh: could not resolve the jars with Maven (log: $OUT/maven.log)" >&2
    exit 1
fi
javac --release 17 -nowarn -encoding UTF-8 -d "$OUT/classes.tmp" -cp "$OUT/lib.tmp/*" \
    "$HERE"/src/main/java/bench/*.java >&2
rm -rf "$OUT/lib" "$OUT/classes"
mv "$OUT/lib.tmp" "$OUT/lib"
mv "$OUT/classes.tmp" "$OUT/classes"
echo "$want" >"$OUT/stamp"
echo "$OUT/lib/*:$OUT/classes"
