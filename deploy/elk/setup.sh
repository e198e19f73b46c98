#!/usr/bin/env bash
# One-shot setup of the compose Elasticsearch (the `elk` profile's elk-setup service), run as
# the `elastic` superuser and safe to run again on every start:
#   - kibana_system (Kibana's own login) gets KIBANA_SYSTEM_PASSWORD;
#   - role mall_logs_writer may create and write indices mall-logs-* and nothing else; user
#     mall_logstash (LOGSTASH_ES_PASSWORD) has only that role (Logstash's login);
#   - index template mall-logs: one shard, no replica (a single node), and trace_id, span_id,
#     request_id, service, level and target as keywords, so a search by trace id is exact.
# Passwords go to curl through a config on stdin, never on its command line.
set -euo pipefail

es=${ES_URL:-http://elasticsearch:9200}

for var in ELASTIC_PASSWORD KIBANA_SYSTEM_PASSWORD LOGSTASH_ES_PASSWORD; do
  value=${!var:-}
  # They go into JSON bodies and curl configs: keep them to URL-safe characters.
  [[ "$value" =~ ^[A-Za-z0-9._~-]{16,}$ ]] || {
    echo "elk-setup: $var must be at least 16 of [A-Za-z0-9._~-] (see deploy/.env.example)" >&2
    exit 1
  }
done

# curl as `elastic`: es METHOD PATH [JSON-BODY]
es() {
  local method=$1 path=$2 body=${3:-}
  local args=(-fsS -K - -X "$method" -H 'Content-Type: application/json' "$es$path")
  [ -n "$body" ] && args+=(--data-binary "$body")
  printf 'user = "elastic:%s"\n' "$ELASTIC_PASSWORD" | curl "${args[@]}" >/dev/null
}

echo "elk-setup: waiting for Elasticsearch at $es"
for _ in $(seq 1 60); do
  es GET "/_cluster/health?wait_for_status=yellow&timeout=5s" 2>/dev/null && break
  sleep 5
done
es GET "/_cluster/health?wait_for_status=yellow&timeout=5s"

es POST /_security/user/kibana_system/_password \
  "{\"password\":\"$KIBANA_SYSTEM_PASSWORD\"}"

es PUT /_security/role/mall_logs_writer '{
  "cluster": ["monitor"],
  "indices": [
    {"names": ["mall-logs-*"], "privileges": ["create_index", "create", "write"]}
  ]
}'

es PUT /_security/user/mall_logstash \
  "{\"password\":\"$LOGSTASH_ES_PASSWORD\",\"roles\":[\"mall_logs_writer\"],\"full_name\":\"TikTokMall Logstash\"}"

es PUT /_index_template/mall-logs '{
  "index_patterns": ["mall-logs-*"],
  "template": {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {
      "properties": {
        "@timestamp": {"type": "date"},
        "trace_id": {"type": "keyword"},
        "span_id": {"type": "keyword"},
        "request_id": {"type": "keyword"},
        "service": {"type": "keyword"},
        "level": {"type": "keyword"},
        "target": {"type": "keyword"},
        "rpc_service": {"type": "keyword"},
        "rpc_method": {"type": "keyword"},
        "stream": {"type": "keyword"},
        "message": {"type": "text"}
      }
    }
  }
}'

echo "elk-setup: done (users kibana_system and mall_logstash, template mall-logs)"
