#!/usr/bin/env bash
# Checks the deployment files under deploy/ without starting anything:
#   1. promtool: the Prometheus config, the alert rules and their unit tests;
#   2. every YAML file under deploy/ parses, and the Grafana dashboards are valid JSON;
#   3. docker-compose.yaml declares the seven services on ports 8000-8006, built from
#      deploy/Dockerfile with a SERVICE build arg naming a workspace package (services not yet in
#      the workspace are reported as planned, not failed), with peers and Prometheus targets that
#      match;
#   4. compose is closed by default: no published MySQL, Redis or Consul port, every published
#      port bound to MALL_PUBLISH_HOST (127.0.0.1 unless set), Redis with a password, AOF and
#      noeviction, one MySQL user per service (the init script is run against a stand-in client
#      and its SQL checked), every secret required from deploy/.env (listed in .env.example,
#      which holds no value; .env is ignored by git);
#   5. the sample configs in deploy/config use known values and hold no password.
# Installs Debian's `prometheus` (for promtool) and `python3-yaml` when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=(auth user cart product order payment checkout)

step() { printf -- '--- %s\n' "$*"; }
note() { printf 'note: %s\n' "$*"; }
die() { printf 'check-deploy: %s\n' "$*" >&2; exit 1; }

# apt-get install that waits up to 3 minutes for a dpkg lock held by another install (CI may be
# installing the same packages in the background), refreshing the package lists once if needed.
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  local opts=(-y -qq -o DPkg::Lock::Timeout=180)
  if ! apt-get install "${opts[@]}" "$@" >/dev/null; then
    apt-get update -qq -o DPkg::Lock::Timeout=180 || true
    apt-get install "${opts[@]}" "$@" >/dev/null
  fi
}

# Waits until `cmd` works, for a package that a concurrent install may be unpacking right now.
wait_for() {
  local what=$1 pkg=$2
  shift 2
  "$@" >/dev/null 2>&1 && return 0
  echo "installing $pkg (for $what)"
  local deadline=$((SECONDS + 180))
  until "$@" >/dev/null 2>&1; do
    apt_install "$pkg" || true
    "$@" >/dev/null 2>&1 && break
    [ "$SECONDS" -lt "$deadline" ] || die "$what is unavailable (apt-get install $pkg failed)"
    sleep 5
  done
}

wait_for promtool prometheus promtool --version
wait_for "python3 yaml" python3-yaml python3 -c 'import yaml'
# pyenv and friends may put a python3 without the Debian module first on PATH.
PY=python3
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  PY=/usr/bin/python3
  "$PY" -c 'import yaml' >/dev/null 2>&1 || die "no python3 with the yaml module"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- 1. Prometheus -------------------------------------------------------------------------------
step "promtool check config deploy/prometheus/prometheus.yml"
# Debian builds Prometheus without Consul service discovery. When this promtool cannot parse
# consul_sd_configs, check a copy whose Consul blocks are replaced by empty static target lists
# (everything else, relabeling included, is still checked) and check the Consul blocks' shape here.
cat >"$work/probe.yml" <<'EOF'
scrape_configs:
  - job_name: probe
    consul_sd_configs:
      - server: localhost:8500
EOF
if promtool check config "$work/probe.yml" >/dev/null 2>&1; then
  promtool check config deploy/prometheus/prometheus.yml
else
  note "this promtool ($(promtool --version 2>&1 | head -1 | awk '{print $3}')) has no Consul SD" \
    "(Debian build); checking the config with consul_sd_configs stubbed out"
  mkdir -p "$work/prometheus"
  cp deploy/prometheus/*.yml "$work/prometheus/"
  "$PY" - "$work/prometheus/prometheus.yml" "${SERVICES[@]}" <<'EOF'
import sys, yaml
path, services = sys.argv[1], sys.argv[2:]
with open(path) as f:
    cfg = yaml.safe_load(f)
stubbed = 0
for job in cfg.get("scrape_configs", []):
    blocks = job.pop("consul_sd_configs", None)
    if blocks is None:
        continue
    for b in blocks:
        assert isinstance(b.get("server"), str) and b["server"], f"{job['job_name']}: consul server"
        missing = set(services) - set(b.get("services", []))
        assert not missing, f"{job['job_name']}: consul services lack {sorted(missing)}"
    sources = {s for r in job.get("relabel_configs", []) for s in r.get("source_labels", [])}
    for label in ("__meta_consul_tags", "__meta_consul_service_metadata_admin_port"):
        assert label in sources, f"{job['job_name']}: no relabeling on {label}"
    job.setdefault("static_configs", []).append({"targets": []})
    stubbed += 1
assert stubbed, "no job uses consul_sd_configs"
with open(path, "w") as f:
    yaml.safe_dump(cfg, f, sort_keys=False)
EOF
  promtool check config "$work/prometheus/prometheus.yml"
fi

step "promtool check rules deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml

step "promtool test rules deploy/prometheus/alerts_test.yml"
promtool test rules deploy/prometheus/alerts_test.yml

# --- 2. syntax -----------------------------------------------------------------------------------
step "YAML files under deploy/ parse"
mapfile -t yamls < <(find deploy -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
[ ${#yamls[@]} -gt 0 ] || die "no YAML files under deploy/"
"$PY" - "${yamls[@]}" <<'EOF'
import sys, yaml
for path in sys.argv[1:]:
    with open(path) as f:
        try:
            docs = list(yaml.safe_load_all(f))
        except yaml.YAMLError as e:
            sys.exit(f"{path}: {e}")
    if not docs or docs[0] is None:
        sys.exit(f"{path}: empty")
    print(f"ok {path}")
EOF

step "Grafana dashboards are valid JSON"
mapfile -t dashboards < <(find deploy/grafana/dashboards -type f -name '*.json' | sort)
[ ${#dashboards[@]} -gt 0 ] || die "no dashboards under deploy/grafana/dashboards"
for d in "${dashboards[@]}"; do
  "$PY" -m json.tool "$d" >/dev/null || die "$d is not valid JSON"
  "$PY" - "$d" <<'EOF'
import json, sys
path = sys.argv[1]
with open(path) as f:
    d = json.load(f)
assert d.get("uid") and d.get("title"), f"{path}: uid and title are required"
assert d.get("schemaVersion") == 39, f"{path}: schemaVersion should be 39"
names = [v["name"] for v in d.get("templating", {}).get("list", [])]
assert "service" in names, f"{path}: no `service` template variable"
ids = [p["id"] for p in d.get("panels", [])]
assert ids and len(ids) == len(set(ids)), f"{path}: panel ids missing or repeated"
for p in d["panels"]:
    for t in p.get("targets", []):
        uid = t.get("datasource", p.get("datasource", {})).get("uid")
        assert uid == "prometheus", f"{path}: panel {p['title']!r} uses datasource {uid!r}"
        assert t.get("expr"), f"{path}: panel {p['title']!r} has a target without expr"
print(f"ok {path} ({len(ids)} panels)")
EOF
done

step "dashboard queries are valid PromQL"
# Grafana's variables replaced by plain values, each expression checked as a recording rule.
"$PY" - "$work/dashboard-rules.yml" "${dashboards[@]}" <<'EOF'
import json, sys, yaml
out, paths = sys.argv[1], sys.argv[2:]
rules = []
for path in paths:
    with open(path) as f:
        d = json.load(f)
    for p in d["panels"]:
        for t in p.get("targets", []):
            expr = (t["expr"].replace("$__rate_interval", "5m").replace("$__interval", "1m")
                    .replace("${service}", ".*").replace("$service", ".*"))
            rules.append({"record": f"dashboard:panel{p['id']}:{t['refId']}", "expr": expr})
with open(out, "w") as f:
    yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, f)
EOF
promtool check rules "$work/dashboard-rules.yml"

# --- 3. compose ----------------------------------------------------------------------------------
step "docker-compose.yaml: the seven services"
"$PY" - deploy/docker-compose.yaml deploy/prometheus/prometheus.yml "${SERVICES[@]}" <<'EOF'
import os, re, sys, yaml

compose_path, prom_path, names = sys.argv[1], sys.argv[2], sys.argv[3:]
ports = {n: 8000 + i for i, n in enumerate(names)}
calls = {"user": ["auth"], "cart": ["product"], "order": ["product"],
         "checkout": ["cart", "product", "order", "payment"]}
base = os.path.dirname(compose_path)
errors = []

def fail(msg):
    errors.append(msg)

with open(compose_path) as f:
    compose = yaml.safe_load(f)
if "version" in compose:
    fail("the top-level `version` key is obsolete in the compose spec")
services = compose.get("services", {})
for backend in ("mysql", "redis", "consul", "jaeger", "prometheus", "grafana"):
    if backend not in services:
        fail(f"service `{backend}` is missing")

for name in names:
    svc = services.get(name)
    if svc is None:
        fail(f"service `{name}` is missing")
        continue
    port = ports[name]
    published = [str(p) for p in svc.get("ports", [])]
    if not any(re.fullmatch(rf"\$\{{MALL_PUBLISH_HOST:-127\.0\.0\.1\}}:{port}:{port}(?:/tcp)?", p)
               for p in published):
        fail(f"{name}: gRPC port {port} is not published as "
             f"${{MALL_PUBLISH_HOST:-127.0.0.1}}:{port}:{port} (got {published})")
    build = svc.get("build") or {}
    dockerfile = os.path.normpath(os.path.join(base, build.get("context", "."),
                                               build.get("dockerfile", "Dockerfile")))
    if not os.path.isfile(dockerfile):
        fail(f"{name}: Dockerfile {dockerfile} does not exist")
    elif os.path.basename(dockerfile) != "Dockerfile" or "deploy" not in dockerfile:
        fail(f"{name}: should build from deploy/Dockerfile, not {dockerfile}")
    arg = (build.get("args") or {}).get("SERVICE")
    if arg != name:
        fail(f"{name}: build arg SERVICE is {arg!r}, expected {name!r}")
    elif os.path.isdir(f"services/{arg}") or os.path.isdir(f"crates/{arg}"):
        print(f"ok {name}: port {port}, builds package `{arg}`")
    else:
        print(f"ok {name}: port {port}; note: services/{arg} does not exist yet (planned), "
              f"its image cannot be built until it lands")
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    if str(env.get("MALL__SERVER__PORT")) != str(port):
        fail(f"{name}: MALL__SERVER__PORT should be {port}")
    cfg = env.get("MALL_CONFIG")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", []) if isinstance(v, str)}
    if not cfg or cfg not in mounts:
        fail(f"{name}: MALL_CONFIG {cfg!r} is not a mounted file")
    elif not os.path.isfile(os.path.join(base, mounts[cfg])):
        fail(f"{name}: mounted config {mounts[cfg]} does not exist")
    if not str(env.get("MALL__DATABASE__URL", "")).startswith("mysql://"):
        fail(f"{name}: MALL__DATABASE__URL should point at the compose MySQL")
    if not str(env.get("MALL__CACHE__URL", "")).startswith("redis://"):
        fail(f"{name}: MALL__CACHE__URL should point at the compose Redis")
    for peer in calls.get(name, []):
        want = f"{peer}:{ports[peer]}"
        got = env.get(f"MALL__DISCOVERY__STATIC__{peer.upper()}")
        if got != want:
            fail(f"{name}: MALL__DISCOVERY__STATIC__{peer.upper()} is {got!r}, expected {want!r}")
    deps = svc.get("depends_on") or {}
    for backend in ("mysql", "redis"):
        if not isinstance(deps, dict) or deps.get(backend, {}).get("condition") != "service_healthy":
            fail(f"{name}: should depend on {backend} with condition service_healthy")

for backend in ("mysql", "redis"):
    if backend in services and "healthcheck" not in services[backend]:
        fail(f"{backend}: a healthcheck is needed for condition service_healthy")

# Prometheus scrapes every service's admin port (gRPC + 1000) under its compose hostname.
with open(prom_path) as f:
    prom = yaml.safe_load(f)
targets = {}
for job in prom.get("scrape_configs", []):
    for group in job.get("static_configs", []):
        for t in group.get("targets", []):
            targets[t] = (group.get("labels") or {}).get("service")
for name in names:
    t = f"{name}:{ports[name] + 1000}"
    if targets.get(t) != name:
        fail(f"prometheus.yml: no static target {t} with label service={name}")

if errors:
    sys.exit("\n".join(f"error: {e}" for e in errors))
EOF

# The compose tool's own schema check, with whichever tool is installed (none is required): it
# must refuse to render without deploy/.env's secrets, and render with a generated one.
compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
fi
if [ ${#compose[@]} -gt 0 ]; then
  step "${compose[*]} config"
  scripts/compose-env.sh "$work/compose.env" >/dev/null
  empty_env="$work/empty.env"
  : >"$empty_env"
  if env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
    "${compose[@]}" --env-file "$empty_env" -f deploy/docker-compose.yaml config --quiet \
    >/dev/null 2>&1; then
    die "compose renders without the secrets of deploy/.env"
  fi
  "${compose[@]}" --env-file "$work/compose.env" -f deploy/docker-compose.yaml config --quiet
  echo "ok: refused without deploy/.env, renders with one"
else
  note "neither docker compose nor docker-compose is installed; compose checked structurally only"
fi

# --- 4. compose hardening ------------------------------------------------------------------------
step "docker-compose.yaml: nothing open by default, every secret from deploy/.env"
init_script=deploy/mysql/init/01-service-users.sh
[ -x "$init_script" ] || die "$init_script is missing or not executable (the MySQL image must run it)"
bash -n "$init_script" || die "$init_script does not parse"
# The init script against a stand-in client that keeps the SQL it is sent.
printf '#!/usr/bin/env bash\ncat >"%s"\n' "$work/init.sql" >"$work/client"
chmod +x "$work/client"
init_env=(MYSQL_ROOT_PASSWORD=root-pw "MYSQL_CLIENT=$work/client")
for s in "${SERVICES[@]}"; do init_env+=("MALL_DB_PASSWORD_${s^^}=pw-for-${s}-0123456789"); done
env -i PATH="$PATH" "${init_env[@]}" "$init_script" >/dev/null \
  || die "$init_script failed with every password set"
if env -i PATH="$PATH" "${init_env[@]}" MALL_DB_PASSWORD_CART= "$init_script" >/dev/null 2>&1; then
  die "$init_script ran without MALL_DB_PASSWORD_CART"
fi
if env -i PATH="$PATH" "${init_env[@]}" "MALL_DB_PASSWORD_CART=it's-not-url-safe!" \
  "$init_script" >/dev/null 2>&1; then
  die "$init_script accepted a password that is not URL-safe"
fi
"$PY" - deploy/docker-compose.yaml deploy/.env.example "$work/init.sql" "$init_script" "${SERVICES[@]}" <<'EOF'
import os, re, sys, yaml

compose_path, example_path, sql_path, init_script, names = (
    sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
errors = []
fail = errors.append
with open(compose_path) as f:
    raw = f.read()
services = yaml.safe_load(raw).get("services", {})
PUBLISH = "${MALL_PUBLISH_HOST:-127.0.0.1}:"

def env_of(svc):
    env = svc.get("environment") or {}
    return dict(e.split("=", 1) for e in env) if isinstance(env, list) else env

# Backends are reachable from the compose network only; whatever is published is on loopback.
for backend in ("mysql", "redis", "consul"):
    svc = services.get(backend, {})
    if svc.get("ports") or svc.get("network_mode") == "host":
        fail(f"{backend}: publishes ports; it must be reachable from the compose network only")
for name, svc in services.items():
    if name in ("mysql", "redis", "consul"):
        continue
    for p in svc.get("ports", []):
        if not (isinstance(p, str) and p.startswith(PUBLISH)):
            fail(f"{name}: published port {p!r} is not bound to {PUBLISH[:-1]}")

# Redis: a password, AOF, and never an eviction.
cmd = [str(a) for a in services.get("redis", {}).get("command", [])]
def arg(flag):
    return cmd[cmd.index(flag) + 1] if flag in cmd[:-1] else None
if not (arg("--requirepass") or "").startswith("${REDIS_PASSWORD:?"):
    fail("redis: --requirepass must be ${REDIS_PASSWORD:?...}")
if arg("--appendonly") != "yes":
    fail("redis: --appendonly yes is required")
if arg("--maxmemory-policy") != "noeviction":
    fail("redis: --maxmemory-policy noeviction is required (revocations must not be evicted)")

# Secrets: required (`${VAR:?...}`), never defaulted, and all listed in .env.example.
for m in re.finditer(r"\$\{(\w*(?:PASSWORD|SECRET)\w*)(:?[-?])?", raw):
    if m.group(2) != ":?":
        fail(f"compose: ${{{m.group(1)}}} must be required as ${{{m.group(1)}:?message}}")
if re.search(r"change-me", raw, re.I):
    fail("compose: a `change-me` default is left")
required = set(re.findall(r"\$\{(\w+):\?", raw))
example = {}
with open(example_path) as f:
    for line in f:
        m = re.match(r"^(\w+)=(.*)$", line.strip())
        if m:
            example[m.group(1)] = m.group(2)
for var in sorted(required - set(example)):
    fail(f".env.example: {var} (required by compose) is not listed")
for var, value in example.items():
    if value:
        fail(f".env.example: {var} has a value; the example must hold none")
for var in ("MALL_JWT_SECRET", "REDIS_PASSWORD", "MYSQL_ROOT_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
            "MALL_CHECKOUT_FINGERPRINT_SECRET", "MALL_ACCESS_VERIFY_KEY", "MALL_ACCESS_SIGNING_KEY"):
    if var not in required:
        fail(f"compose: {var} is not required")

# One MySQL user per service, on its own database; the init script creates them all.
mysql = services.get("mysql", {})
mysql_env = env_of(mysql)
mount = "./" + os.path.relpath(init_script, os.path.dirname(compose_path)) + ":"
if not any(isinstance(v, str) and v.startswith(mount + "/docker-entrypoint-initdb.d/")
           for v in mysql.get("volumes", [])):
    fail(f"mysql: {init_script} is not mounted into /docker-entrypoint-initdb.d/")
with open(sql_path) as f:
    sql = f.read()
grants = re.findall(r"GRANT (.+?) ON (\S+) TO '(\w+)'@'%'", sql)
for name in names:
    var = f"MALL_DB_PASSWORD_{name.upper()}"
    if not str(mysql_env.get(var, "")).startswith(f"${{{var}:?"):
        fail(f"mysql: {var} is not passed to the init script")
    env = env_of(services.get(name, {}))
    url = str(env.get("MALL__DATABASE__URL", ""))
    want = rf"mysql://mall_{name}:\$\{{{var}:\?[^}}]*\}}@mysql:3306/mall_{name}"
    if not re.fullmatch(want, url):
        fail(f"{name}: MALL__DATABASE__URL should be mysql://mall_{name}:${{{var}:?...}}"
             f"@mysql:3306/mall_{name}, got {url!r}")
    if str(env.get("MALL__SERVER__HOST")) != "0.0.0.0":
        fail(f"{name}: MALL__SERVER__HOST must be 0.0.0.0 inside the container")
    if f"CREATE USER IF NOT EXISTS 'mall_{name}'@'%'" not in sql:
        fail(f"init script: no user mall_{name}")
    mine = [g for g in grants if g[2] == f"mall_{name}"]
    want_grant = [("ALL PRIVILEGES", f"`mall\\_{name}`.*", f"mall_{name}")]
    if mine != want_grant:
        fail(f"init script: mall_{name} should be granted {want_grant} only, got {mine}")
if len(grants) != len(names) or "GRANT OPTION" in sql or "*.*" in sql:
    fail(f"init script: unexpected grants {grants}")
if re.search(r"mysql://root[:@]", raw):
    fail("compose: a URL still uses MySQL's root")

if errors:
    sys.exit("\n".join(f"error: {e}" for e in errors))
print(f"ok: backends unpublished, ports on {PUBLISH[:-1]}, {len(required)} required variables, "
      f"{len(names)} database users with one grant each")
EOF
if git rev-parse --git-dir >/dev/null 2>&1; then
  git check-ignore -q deploy/.env || die "deploy/.env is not ignored by git (.gitignore)"
  if git ls-files --error-unmatch deploy/.env >/dev/null 2>&1; then
    die "deploy/.env is committed; remove it and rotate every secret in it"
  fi
fi

# --- 5. sample configs ---------------------------------------------------------------------------
step "deploy/config samples"
"$PY" - deploy/config/*.yaml <<'EOF'
import re, sys, yaml
for path in sys.argv[1:]:
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    def get(dotted):
        node = cfg
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node
    checks = {
        "profile": lambda v: v in (None, "dev", "test", "online"),
        "telemetry.log_format": lambda v: v in (None, "pretty", "compact", "json"),
        "database.url": lambda v: v is None or re.match(r"^(sqlite:|mysql://)", v),
        "cache.url": lambda v: v is None or re.match(r"^(memory://|redis://)", v),
        "discovery.kind": lambda v: v in (None, "static", "consul"),
    }
    for key, ok in checks.items():
        if not ok(get(key)):
            sys.exit(f"{path}: unexpected `{key}`: {get(key)!r}")
    for key in ("database.url", "cache.url"):
        v = get(key) or ""
        if re.match(r"^[a-z]+://[^/@]*:[^/@]*@", v):
            sys.exit(f"{path}: `{key}` holds a password; pass it through MALL__ env instead")
    if get("auth.jwt_secret") is not None:
        sys.exit(f"{path}: `auth.jwt_secret` is a secret; set MALL__AUTH__JWT_SECRET instead")
    for name, addrs in (get("discovery.static") or {}).items():
        for a in addrs:
            if not re.fullmatch(r"[\w.-]+:\d+", a):
                sys.exit(f"{path}: discovery.static.{name}: `{a}` is not host:port")
    print(f"ok {path}")
EOF

echo "deploy files OK"
