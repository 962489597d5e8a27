# Shared helpers of the reliability scenarios (sourced, not run). See RELIABILITY.md.
#
# Environment:
#   RELIABILITY_PROFILE  release (default) or debug: which build of docplane and docplane-load to use
#   DOCPLANE_BIN_DIR     use the binaries in this directory instead of building them
#   RELIABILITY_OUT      where results (JSON summaries, logs) go [default: target/reliability/<scenario>]
#   KEEP_WORK=1          keep the temporary directory (data dirs, logs) for inspection
set -euo pipefail

rel_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rel_scenario=$(basename "$0")
rel_pids=()
rel_work=$(mktemp -d "${TMPDIR:-/tmp}/docplane-rel-$rel_scenario.XXXXXX")
rel_out=${RELIABILITY_OUT:-$rel_root/target/reliability/$rel_scenario}
mkdir -p "$rel_out"
rel_cleanups=()

log() { printf '[%s %s] %s\n' "$(date -u +%H:%M:%S)" "$rel_scenario" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# Stops exactly the processes this script started (by pid), then runs registered cleanups.
rel_cleanup() {
  local pid
  for pid in "${rel_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${rel_pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  local c
  for c in "${rel_cleanups[@]}"; do eval "$c" || true; done
  if [ "${KEEP_WORK:-0}" = 1 ]; then log "kept $rel_work"; else rm -rf "$rel_work"; fi
}
trap rel_cleanup EXIT

# Builds (once) and locates docplane, docplane-load and docplane-faultproxy.
rel_binaries() {
  local profile=${RELIABILITY_PROFILE:-release}
  if [ -n "${DOCPLANE_BIN_DIR:-}" ]; then
    bin=$DOCPLANE_BIN_DIR
  else
    local flag=()
    [ "$profile" = release ] && flag=(--release)
    log "building docplane and docplane-loadtest ($profile)"
    (cd "$rel_root" && cargo build --quiet --locked "${flag[@]}" -p docplane -p docplane-loadtest)
    bin=${CARGO_TARGET_DIR:-$rel_root/target}/$profile
  fi
  for b in docplane docplane-load docplane-faultproxy; do
    [ -x "$bin/$b" ] || die "$bin/$b missing"
  done
  export PATH="$bin:$PATH"
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start NAME COMMAND...: runs COMMAND in the background, logs to $rel_work/NAME.log, records its pid
# in rel_pids and in the variable pid_NAME.
start() {
  local name=$1; shift
  "$@" >"$rel_work/$name.log" 2>&1 &
  local p=$!
  rel_pids+=("$p")
  printf -v "pid_$name" '%s' "$p"
  log "started $name (pid $p): $*"
}

# wait_file FILE [SECONDS]
wait_file() {
  local f=$1 t=${2:-60}
  for _ in $(seq 1 $((t * 10))); do [ -s "$f" ] && return 0; sleep 0.1; done
  die "$f did not appear within ${t}s"
}

# wait_http URL [SECONDS]: until GET URL answers anything below 500.
wait_http() {
  local url=$1 t=${2:-60} code
  for _ in $(seq 1 $((t * 10))); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true)
    [ -n "$code" ] && [ "$code" != 000 ] && [ "$code" -lt 500 ] && return 0
    sleep 0.1
  done
  die "$url not answering within ${t}s"
}

# wait_port PORT [SECONDS]
wait_port() {
  local port=$1 t=${2:-60}
  for _ in $(seq 1 $((t * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listening on 127.0.0.1:$port within ${t}s"
}

# token CREDS_FILE ENDPOINT: a project-scoped token for the file's admin (printed, never logged).
token() {
  local creds=$1 endpoint=$2
  jq -n --slurpfile c "$creds" '{auth: {identity: {methods: ["password"], password: {user: {
      name: $c[0].user_name, password: $c[0].password, domain: {name: $c[0].domain_name}}}},
      scope: {project: {id: $c[0].project_id}}}}' |
    curl -sS -D - -o /dev/null -H 'Content-Type: application/json' --data-binary @- "$endpoint/v3/auth/tokens" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "x-subject-token" {print $2}'
}

# register_node CREDS_FILE ENDPOINT NODE_ADDR ROOT_PASSWORD: registers a `docplane node` whose root
# user is `root`; prints the node id.
register_node() {
  local creds=$1 endpoint=$2 addr=$3 password=$4 tok project
  tok=$(token "$creds" "$endpoint")
  [ -n "$tok" ] || die "login at $endpoint failed"
  project=$(jq -r .project_id "$creds")
  jq -n --arg a "$addr" --arg p "$password" \
      '{name: "reltest", mode: "Single", seeds: [$a], username: "root", password: $p}' |
    curl -sS -H 'Content-Type: application/json' -H "X-Auth-Token: $tok" --data-binary @- \
      "$endpoint/v3/$project/instances/register" |
    jq -er '.instance.groups[0].nodes[0].id'
}

# creds_with_node ADMIN_JSON NODE_ID NODE_URI OUT: admin.json of `serve` plus the node, for docplane-load.
creds_with_node() {
  jq --arg n "$2" --arg u "$3" '. + {node_id: $n, node_uri: $u}' "$1" >"$4"
  chmod 600 "$4"
}

random_secret() { openssl rand -hex 24; }

# Median of numbers on stdin.
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# One markdown row from a docplane-load summary: label, req/s, p50, p99, 5xx, timeouts+transport.
summary_row() {
  jq -r '"| \(.label) | \(.requests) | \(.rps*10|round/10) | \(.p50_ms) | \(.p99_ms) | \(.max_ms) | \(.["4xx"]) | \(.["5xx"]) | \(.timeouts + .transport) |"' "$1"
}
summary_header() {
  echo "| run | requests | req/s | p50 ms | p99 ms | max ms | 4xx | 5xx | timeouts+transport |"
  echo "|---|---|---|---|---|---|---|---|---|"
}

machine_line() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git -C "$rel_root" rev-parse --short HEAD 2>/dev/null || echo '?')"
}
