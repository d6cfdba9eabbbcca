#!/usr/bin/env bash
# Put the jars of an Apache Kafka broker (KRaft mode) into a cache directory, once, and
# print the directory that holds them (a Kafka distribution's libs/ equivalent).
#
#   kafka-setup/fetch.sh                  # -> ~/.cache/banking-app/kafka-<version>/libs
#   BANKING_KAFKA_CACHE=/some/dir kafka-setup/fetch.sh
#   KAFKA_HOME=/opt/kafka kafka-setup/fetch.sh   # -> /opt/kafka/libs, downloads nothing
#
# The jars come from Maven Central through pom.xml beside this script (Maven and
# network access needed the first time only). A marker file written after the last jar
# tells a complete cache from a half-done one; a half-done one is fetched again.
# Only the libs path goes to stdout, so callers can take it with $(...).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pom="$here/pom.xml"

if [ -n "${KAFKA_HOME:-}" ]; then
    if ! compgen -G "$KAFKA_HOME/libs/kafka_2.13-*.jar" > /dev/null; then
        echo "KAFKA_HOME=$KAFKA_HOME has no libs/kafka_2.13-*.jar: not a Kafka distribution" >&2
        exit 1
    fi
    echo "$KAFKA_HOME/libs"
    exit 0
fi

version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n 1)
if [ -z "$version" ]; then
    echo "no <kafka.version> in $pom" >&2
    exit 1
fi
cache=${BANKING_KAFKA_CACHE:-$HOME/.cache/banking-app/kafka-$version}
libs="$cache/libs"
marker="$cache/.complete"

if [ -f "$marker" ] && [ "$(cat "$marker")" = "$version" ] && [ -d "$libs" ]; then
    echo "$libs"
    exit 0
fi

if ! command -v mvn > /dev/null; then
    echo "Maven (mvn) is needed to fetch Kafka $version; or set KAFKA_HOME to a Kafka distribution" >&2
    exit 1
fi

echo "fetching Apache Kafka $version jars from Maven Central into $libs" >&2
mkdir -p "$cache"
rm -f "$marker"
rm -rf "$libs" "$libs.partial"
# Maven's own output goes to stderr: stdout carries the libs path only.
mvn -B -q -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$libs.partial" >&2
if ! compgen -G "$libs.partial/kafka_2.13-$version.jar" > /dev/null; then
    echo "Maven finished but $libs.partial has no kafka_2.13-$version.jar" >&2
    exit 1
fi
mv "$libs.partial" "$libs"
echo "$version" > "$marker"
echo "$libs"
