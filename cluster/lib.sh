# shellcheck shell=bash disable=SC2034  # its variables are used by the scripts that source it
# Shared by cluster/up, cluster/down, cluster/status and cluster/drill. Sourced, not run.
#
# State directory layout (everything the local cluster owns; `cluster/down` removes it):
#   env            source it: points `switchman` and `aws` at the local cluster
#   ports          the loopback ports (shell assignments)
#   world          ids of what was seeded into moto (KEY=value lines)
#   config.yaml    the cluster config every replica and sentinel reads
#   certs/         CA, member, sentinel and operator certificates (`switchman certs`)
#   data/<id>/     each replica's LMDB log
#   logs/*.log     one log per process (moto, replica-N, sentinel-T, responder-T)
#   pids/*.pid     one pid file per process

CLUSTER_DIR_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR_SCRIPTS/.." && pwd)"

# The seed topology. Tunnel names: <vpc><az>. VPC a is 10.0.0.0/16, VPC b 172.16.0.0/16;
# both have subnets in us-east-1a and us-east-1b and one VPN instance per AZ.
TUNNELS=(a1 a2 b1 b2)
REPLICAS=(1 2 3)
REGION=us-east-1
ZONE_NAME=vpn.switchman.local
TAG_KEY=switchman/tunnel

# The demo's timings (written into config.yaml and printed by cluster/up). Each can be
# overridden from the environment when cluster/up runs (bench/failover uses this for its
# profiles), e.g. SWITCHMAN_LOCAL_PROBE_INTERVAL=200ms SWITCHMAN_LOCAL_FALL=3.
PROBE_INTERVAL=${SWITCHMAN_LOCAL_PROBE_INTERVAL:-500ms}
PROBE_TIMEOUT=${SWITCHMAN_LOCAL_PROBE_TIMEOUT:-400ms}
FALL=${SWITCHMAN_LOCAL_FALL:-2}
RISE=${SWITCHMAN_LOCAL_RISE:-3}
FAILBACK_HOLD_DOWN=${SWITCHMAN_LOCAL_FAILBACK_HOLD_DOWN:-10s}
OBSERVATION_TTL=${SWITCHMAN_LOCAL_OBSERVATION_TTL:-5s}
HEARTBEAT=${SWITCHMAN_LOCAL_HEARTBEAT:-100ms}
ELECTION_TIMEOUT=${SWITCHMAN_LOCAL_ELECTION_TIMEOUT:-1s}
# Extra addresses (space-separated) the far-side responders listen on besides 127.0.0.1, on
# the same port: bench/keepalived sets it to its bridge address so that health checks from
# its network namespaces reach the same responder processes.
RESPONDER_EXTRA_ADDRS=${SWITCHMAN_LOCAL_RESPONDER_EXTRA_ADDRS:-}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

say() { printf '%s\n' "$*"; }
step() { printf '==> %s\n' "$*"; }

# Sets STATE_DIR from --dir (already parsed into $1, may be empty) or the environment.
resolve_state_dir() {
    local dir="${1:-${SWITCHMAN_LOCAL_DIR:-$PWD/.switchman-local}}"
    case "$dir" in
        /*) ;;
        *) dir="$PWD/$dir" ;;
    esac
    STATE_DIR="${dir%/}"
}

switchman_binary() {
    printf '%s\n' "${SWITCHMAN_BINARY:-$REPO_ROOT/.build/debug/switchman}"
}

# awscli against the local moto, with fixed dummy credentials and none of the user's own
# AWS config (which must never leak in or point anything at real AWS).
# Needs MOTO_PORT (from the ports file).
local_aws() {
    env -u AWS_PROFILE -u AWS_SESSION_TOKEN \
        AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION="$REGION" \
        AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
        aws --endpoint-url "http://127.0.0.1:$MOTO_PORT" --region "$REGION" "$@"
}

load_ports() {
    [[ -f "$STATE_DIR/ports" ]] || die "no local cluster in $STATE_DIR (no ports file); start one with cluster/up"
    # shellcheck source=/dev/null
    source "$STATE_DIR/ports"
}

# Reads KEY from the world file.
world() {
    local line
    line="$(grep -m1 "^$1=" "$STATE_DIR/world" 2>/dev/null)" || die "no $1 in $STATE_DIR/world"
    printf '%s\n' "${line#*=}"
}

# ---------------------------------------------------------------------------------------
# Processes. Each has a name (moto, replica-1, sentinel-a1, responder-a1), a pid file and a
# log. A pid counts as ours only while /proc/PID/cmdline still contains the marker the
# process was started with (a pid can be reused by an unrelated program after it dies).

pid_file() { printf '%s/pids/%s.pid\n' "$STATE_DIR" "$1"; }
log_file() { printf '%s/logs/%s.log\n' "$STATE_DIR" "$1"; }

# The marker that identifies each kind of process in its command line.
process_marker() {
    case "$1" in
        moto) printf 'moto_server\n' ;;
        aws) printf 'proxy.py\n' ;;
        replica-*) printf -- '--id\n' ;;
        sentinel-*) printf -- '--tunnel\n' ;;
        responder-*) printf 'responder.py\n' ;;
        *) die "unknown process $1" ;;
    esac
}

# Prints the pid of NAME if it is running (and is what we started), else returns 1.
live_pid() {
    local name="$1" file pid cmdline state
    file="$(pid_file "$name")"
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    # A killed process stays a zombie until its parent reaps it: that is not running.
    state="$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" || return 1
    [[ "$state" != Z ]] || return 1
    # Our processes all carry the state directory (or moto's port) in their command line.
    local marker
    marker="$(process_marker "$name")"
    [[ "$cmdline" == *"$marker"* ]] || return 1
    case "$name" in
        moto) [[ "$cmdline" == *"-p $MOTO_PORT"* ]] || return 1 ;;
        *) [[ "$cmdline" == *"$STATE_DIR"* ]] || return 1 ;;
    esac
    printf '%s\n' "$pid"
}

# Whether NAME, started by this very shell with spawn, has not exited yet. Unlike live_pid it
# does not read the command line: that passes through other programs while the process
# execs its way to its real one (pyenv's shims are bash, then pyenv, then python), and one
# unlucky read made cluster/up say "moto_server exited" of a moto that was starting fine.
# The pid cannot belong to anyone else: it is our unreaped child.
spawned_alive() {
    local pid state
    pid="$(cat "$(pid_file "$1")" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    # Gone (bash reaps its background children as they exit) or a zombie: exited. A status
    # file that cannot be read for a moment is not evidence of anything.
    kill -0 "$pid" 2>/dev/null || return 1
    state="$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" || return 0
    [[ "$state" != Z ]]
}

# Says how a process that spawn started has ended, with the tail of its log.
report_spawned_exit() {
    local name="$1" lines="${2:-20}" pid status=0
    pid="$(cat "$(pid_file "$name")" 2>/dev/null)" || pid=""
    if [[ "$pid" =~ ^[0-9]+$ ]]; then wait "$pid" 2>/dev/null || status=$?; fi
    show_log_tail "$name" "$lines"
    die "$name exited${pid:+ (pid $pid, exit status $status)}"
}

all_process_names() {
    local t id
    printf 'moto\n'
    [[ -z "${AWS_PORT:-}" ]] || printf 'aws\n'
    for t in "${TUNNELS[@]}"; do printf 'responder-%s\nsentinel-%s\n' "$t" "$t"; done
    for id in "${REPLICAS[@]}"; do printf 'replica-%s\n' "$id"; done
}

# Starts NAME detached (own session, stdin from /dev/null, output appended to its log) and
# writes its pid file. The rest of the arguments are the command.
spawn() {
    local name="$1"
    shift
    local log
    log="$(log_file "$name")"
    printf '=== %s: starting %s: %s\n' "$(date -u +%FT%TZ)" "$name" "$*" >>"$log"
    # setsid without -f execs in place (a background job is never a group leader), so $! is
    # the program's own pid.
    setsid "$@" </dev/null >>"$log" 2>&1 &
    local pid=$!
    printf '%s\n' "$pid" >"$(pid_file "$name")"
    # Until the child has exec'd, its command line is still this shell's, and live_pid would
    # call it "not ours" (cluster/up then said "moto_server exited" on a busy machine). Wait
    # (at most 2 s) until it has become the program.
    local self i
    self="$(tr '\0' ' ' </proc/$$/cmdline 2>/dev/null)"
    for ((i = 0; i < 200; i++)); do
        [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == "$self" ]] || break
        sleep 0.01
    done
}

# Sends SIGNAL to NAME (if it is ours and alive) and waits until it is gone.
stop_process() {
    local name="$1" signal="${2:-TERM}" timeout="${3:-20}" pid
    pid="$(live_pid "$name")" || {
        rm -f "$(pid_file "$name")"
        return 0
    }
    kill "-$signal" "$pid" 2>/dev/null || true
    if ! wait_for "$name to exit" "$timeout" not_running "$name" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_for "$name to exit after SIGKILL" 10 not_running "$name" || true
    fi
    rm -f "$(pid_file "$name")"
}

not_running() { ! live_pid "$1" >/dev/null; }

# wait_for WHAT TIMEOUT_SECONDS COMMAND...: polls COMMAND until it succeeds; on timeout says
# what it was waiting for and returns 1.
wait_for() {
    local what="$1" timeout="$2"
    shift 2
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if "$@"; then return 0; fi
        sleep 0.3
    done
    "$@" && return 0
    printf 'error: timed out after %ss waiting for %s\n' "$timeout" "$what" >&2
    return 1
}

# Whether something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

# Whether 127.0.0.1:PORT can be bound right now.
port_free() {
    python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

# Prints the last lines of a process's log, indented, to stderr.
show_log_tail() {
    local name="$1" lines="${2:-20}" log
    log="$(log_file "$name")"
    [[ -f "$log" ]] || return 0
    printf -- '--- last %s lines of %s:\n' "$lines" "$log" >&2
    tail -n "$lines" "$log" | sed 's/^/    /' >&2
}

# ---------------------------------------------------------------------------------------
# Starting each kind of process (used by up and by the drills, so a restart is identical).

start_moto() {
    spawn moto env -u INITIAL_NO_AUTH_ACTION_COUNT moto_server -H 127.0.0.1 -p "$MOTO_PORT"
}

# The AWS realism layer (bench/proxy.py) in front of moto: what the replicas call. Its
# settings are STATE_DIR/realism.json, re-read when the file changes; every request it
# answers is one line of logs/aws-requests.jsonl.
start_aws() {
    spawn aws python3 "$REPO_ROOT/bench/proxy.py" --port "$AWS_PORT" --upstream "127.0.0.1:$MOTO_PORT" \
        --log "$STATE_DIR/logs/aws-requests.jsonl" --control "$STATE_DIR/realism.json"
}

responder_port() {
    local var="RESPONDER_PORT_$1"
    printf '%s\n' "${!var:?no responder port for tunnel $1 (unknown tunnel?)}"
}

sentinel_port() {
    local var="SENTINEL_PORT_$1"
    printf '%s\n' "${!var:?no sentinel port for tunnel $1}"
}

start_responder() {
    local t="$1"
    local extra
    read -r -a extra <<<"$RESPONDER_EXTRA_ADDRS"
    spawn "responder-$t" python3 "$CLUSTER_DIR_SCRIPTS/responder.py" "$(responder_port "$t")" "$t" "$STATE_DIR" ${extra[@]+"${extra[@]}"}
}

# The sentinel says which instance it runs on, as IMDSv2 would tell it on EC2: replicas count
# its verdict only for the tunnel's current instance (a replacement earns its own).
start_sentinel() {
    local t="$1" instance
    instance="$(tunnel_instance "$t" | cut -d' ' -f1)" || instance=""
    spawn "sentinel-$t" env AWS_EC2_METADATA_DISABLED=true \
        "$(switchman_binary)" sentinel --config "$STATE_DIR/config.yaml" --tunnel "$t" ${instance:+--instance-id "$instance"}
}

start_replica() {
    local id="$1"
    spawn "replica-$id" env -u AWS_PROFILE -u AWS_SESSION_TOKEN \
        AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
        AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
        "$(switchman_binary)" serve --config "$STATE_DIR/config.yaml" --id "$id" --log-level info --bootstrap
}

# ---------------------------------------------------------------------------------------
# Reading the cluster.

peer_port() {
    local var="PEER_PORT_$1"
    printf '%s\n' "${!var:?no peer port for replica $1}"
}

admin_port() {
    local var="ADMIN_PORT_$1"
    printf '%s\n' "${!var:?no admin port for replica $1}"
}

# Sets the SWITCHMAN_* and AWS_* variables of the env file in this shell.
export_cluster_env() {
    # shellcheck source=/dev/null
    source "$STATE_DIR/env"
}

# Whether this switchman has the operator CLI (`switchman status`).
have_status_cli() {
    "$(switchman_binary)" status --help 2>/dev/null | grep -q 'USAGE: switchman status'
}

# GET PATH from the admin API of any replica that answers; prints the JSON body.
admin_get() {
    local path="$1" id
    for id in "${REPLICAS[@]}"; do
        if curl -sf --max-time 5 --cacert "$STATE_DIR/certs/ca.pem" \
            --cert "$STATE_DIR/certs/client-operator.pem" --key "$STATE_DIR/certs/client-operator-key.pem" \
            "https://127.0.0.1:$(admin_port "$id")$path"; then
            return 0
        fi
    done
    return 1
}

# The status table: `switchman status` when this build has it, else the admin API via curl.
print_cluster_status() {
    if have_status_cli; then
        (export_cluster_env && "$(switchman_binary)" status) && return 0
        say "(switchman status failed; asking the admin API directly)"
    fi
    local json
    if ! json="$(admin_get /v1/status)"; then
        say "no replica answers /v1/status (no leader or no quorum yet?); try: cluster/status"
        return 1
    fi
    python3 "$CLUSTER_DIR_SCRIPTS/status_table.py" <<<"$json"
}

# "tunnel table target" per tunnel: where the managed route of the tunnel's own AZ table
# (VPC a's to 172.16.0.0/16, VPC b's to 10.0.0.0/16) points now (ENI, else instance, "-").
route_targets_by_tunnel() {
    local t tables=() out
    for t in "${TUNNELS[@]}"; do tables+=("$(world "RTB_$t")"); done
    out="$(local_aws ec2 describe-route-tables --route-table-ids "${tables[@]}" --output json | python3 -c '
import json, sys
for t in json.load(sys.stdin)["RouteTables"]:
    target = "-"
    for r in t.get("Routes", []):
        if r.get("DestinationCidrBlock") in ("172.16.0.0/16", "10.0.0.0/16"):
            target = r.get("NetworkInterfaceId") or r.get("InstanceId") or "?"
    print(t["RouteTableId"], target)
')" || return 1
    for t in "${TUNNELS[@]}"; do
        printf '%s %s %s\n' "$t" "$(world "RTB_$t")" "$(awk -v r="$(world "RTB_$t")" '$1 == r {print $2}' <<<"$out")"
    done
}

# The live (pending/running) instance carrying the tunnel's tag: "instance eni ip subnet".
tunnel_instance() {
    local_aws ec2 describe-instances --output json \
        --filters "Name=tag:$TAG_KEY,Values=$1" "Name=instance-state-name,Values=pending,running" |
        python3 -c '
import json, sys
for r in json.load(sys.stdin)["Reservations"]:
    for i in r["Instances"]:
        enis = sorted(i.get("NetworkInterfaces", []), key=lambda n: n.get("Attachment", {}).get("DeviceIndex", 0))
        print(i["InstanceId"], enis[0]["NetworkInterfaceId"] if enis else "-", i.get("PrivateIpAddress", "-"), i.get("SubnetId", "-"))
        sys.exit(0)
sys.exit(1)
'
}
