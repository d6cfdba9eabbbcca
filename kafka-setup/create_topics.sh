#!/usr/bin/env bash
# Create the bank's topics on a Kafka cluster: commands, events, commands-dlq.
#
#   KAFKA_BROKER=kafka://broker1:9092 BANKING_PARTITIONS=8 BANKING_REPLICATION_FACTOR=3 \
#       kafka-setup/create_topics.sh
#
# events is kept forever (it is the source of truth); commands for
# BANKING_COMMANDS_RETENTION_MS (default 7 days); the dead letters forever.
# Uses kafka-topics.sh when it is on PATH or under $KAFKA_HOME, and the app's own
# admin command (`banking-app create-topics`) otherwise, which makes the workers' own
# topics too (command-outcome-events, the tables' changelogs); a worker makes any that
# are missing before it subscribes. Existing topics are kept.
set -euo pipefail

partitions=${BANKING_PARTITIONS:-8}
replication=${BANKING_REPLICATION_FACTOR:-1}
commands_retention=${BANKING_COMMANDS_RETENTION_MS:-604800000}
broker=${KAFKA_BROKER:-kafka://localhost:9092}
bootstrap=$(echo "$broker" | sed -e 's#kafka://##g' -e 's#;#,#g')

kafka_topics=$(command -v kafka-topics.sh || true)
if [ -z "$kafka_topics" ] && [ -n "${KAFKA_HOME:-}" ] && [ -x "$KAFKA_HOME/bin/kafka-topics.sh" ]; then
    kafka_topics="$KAFKA_HOME/bin/kafka-topics.sh"
fi

if [ -z "$kafka_topics" ]; then
    exec banking-app create-topics --partitions "$partitions" --replication-factor "$replication"
fi

create() {
    local topic=$1; shift
    "$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$topic" --partitions "$partitions" --replication-factor "$replication" "$@"
}
create commands --config "retention.ms=$commands_retention"
create events --config retention.ms=-1 --config retention.bytes=-1
create commands-dlq --config retention.ms=-1
"$kafka_topics" --bootstrap-server "$bootstrap" --describe --topic 'commands|events|commands-dlq' 2>/dev/null || true
