#!/usr/bin/env bash
# Chaos check of the compose cluster (packaging/compose/compose.yaml): the cluster keeps serving
# while its leader's container is SIGKILLed and while one replica is cut off the network.
#
#   1. bring the cluster up under a project name of its own, on free 127.0.0.1 ports and a free
#      /24 (building storcon:local first if it is missing, or always with --build);
#   2. wait for a ready leader and the three pageservers Active;
#   3. start a bounded write load: tenant creates (POST /v1/tenant), each tried on one replica
#      and then the next (create is idempotent), every 201 recorded as acknowledged;
#   4. `docker kill` (SIGKILL) the leader's container; measure the time until a survivor is the
#      ready leader, then require writes acknowledged through the survivors;
#   5. start the killed replica again and wait until it is ready (caught up);
#   6. `docker network disconnect` the current leader; require a new leader among the others and
#      writes acknowledged through them;
#   7. reconnect it at its address and name; require it ready and applied up to the leader's
#      applied index taken after the reconnect;
#   8. stop the load; every acknowledged tenant must be listed, through each replica;
#   9. print a summary and exit 0 only if every step held.
# Every wait has a deadline, and a watchdog bounds the whole run (CHECK_TIMEOUT_S, default 300);
# the EXIT trap removes the cluster with its volumes (`compose down -v`) on every path.
# Targets are only 127.0.0.1 published ports and the compose network's own addresses.
#
# Usage: packaging/compose/check.sh [--build]
# Needs docker, compose (`docker compose` or `docker-compose`), curl and jq.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export STORCON_IMAGE="${STORCON_IMAGE:-storcon:local}"
total_timeout="${CHECK_TIMEOUT_S:-300}"
step_timeout="${CHECK_STEP_TIMEOUT_S:-60}"
max_writes="${CHECK_MAX_WRITES:-3000}"
acks_per_phase="${CHECK_ACKS_PER_PHASE:-5}"

log() { printf '%s check: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; failed=1; exit 1; }
now() { date +%s.%N; }
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

for tool in docker curl jq; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose_cmd=(docker-compose)
else
  die "neither 'docker compose' nor docker-compose is available"
fi
docker info >/dev/null 2>&1 || die "docker does not answer (docker info)"

# --- state and teardown -------------------------------------------------------------------------
project="storconcheck$$"
work="$(mktemp -d)"
# Times are those the request was sent at (what a phase is judged by) and answered at.
acks="$work/acks"    # "<sent> <answered> <tenant_id> <replica>" per acknowledged create
fails="$work/fails"  # "<sent> <answered> <tenant_id> <replica> <status, 000: none> <msg>" per failure
stop="$work/stop"
touch "$acks" "$fails"
load_pid=""
watchdog_pid=""
failed=0

compose() { "${compose_cmd[@]}" -p "$project" -f "$here/compose.yaml" "$@"; }

teardown() {
  local status=$?
  set +e
  trap - EXIT INT TERM
  [[ -n "$watchdog_pid" ]] && kill "$watchdog_pid" 2>/dev/null
  if [[ -n "$load_pid" ]]; then
    touch "$stop"
    kill "$load_pid" 2>/dev/null
    wait "$load_pid" 2>/dev/null
  fi
  if (( status != 0 )) && [[ -z "${CHECK_QUIET_LOGS:-}" ]]; then
    log "replica logs (last 15 lines each):"
    for n in 1 2 3; do compose logs --no-color --tail 15 "storcon-$n" >&2 2>/dev/null || true; done
  fi
  compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || log "compose down failed"
  rm -rf "$work"
  exit "$status"
}
trap teardown EXIT
trap 'log "interrupted"; exit 1' INT TERM

# The watchdog bounds the run: on expiry the script gets SIGTERM and the trap tears down.
# Killing the watchdog also ends its sleep.
(
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  sleep "$total_timeout" & nap=$!
  wait "$nap"
  log "FAILED: the whole check exceeded ${total_timeout}s"
  kill -TERM $$
) &
watchdog_pid=$!

# --- ports, subnet, image -----------------------------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
declare -A port
for n in 1 2 3; do
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 30000))
    if port_free "$p" && [[ " ${port[*]:-} " != *" $p "* ]]; then port[$n]=$p; break; fi
  done
  [[ -n "${port[$n]:-}" ]] || die "no free port found"
  export "STORCON_PORT_$n=${port[$n]}"
done
used_subnets="$(docker network inspect $(docker network ls -q) \
  --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' 2>/dev/null || true)"
subnet=""
for _ in $(seq 50); do
  candidate="172.31.$((100 + RANDOM % 150))"
  if [[ "$used_subnets" != *"$candidate."* ]]; then subnet="$candidate"; break; fi
done
[[ -n "$subnet" ]] || die "no free 172.31.x.0/24 for the compose network"
export STORCON_SUBNET="$subnet"
ip_of() { echo "$subnet.1$1"; }

if [[ "${1:-}" == "--build" ]] || ! docker image inspect "$STORCON_IMAGE" >/dev/null 2>&1; then
  log "building $STORCON_IMAGE"
  "$repo/packaging/docker/build-image.sh" >&2
fi

# --- probes -------------------------------------------------------------------------------------
url() { echo "http://127.0.0.1:${port[$1]}$2"; }
get() { curl -sf -m 3 --connect-timeout 1 "$(url "$1" "$2")"; }
ready() { curl -sf -o /dev/null -m 3 --connect-timeout 1 "$(url "$1" /ready)"; }
cluster_field() { get "$1" /control/v1/cluster | jq -er "$2"; }

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds or the deadline passes.
wait_for() {
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    (( SECONDS < deadline )) || die "timed out after ${seconds}s waiting for $what"
    sleep 0.2
  done
}

# The replica that says it leads and is ready, asked through the replicas not listed in $1.
# Prints its id; fails while there is none outside $1.
leader=""
find_leader() {
  local exclude=" ${1:-} " n l
  for n in 1 2 3; do
    [[ "$exclude" == *" $n "* ]] && continue
    l="$(cluster_field "$n" '.leader_id // empty' 2>/dev/null)" || continue
    [[ -n "$l" && "$exclude" != *" $l "* ]] || continue
    [[ "$(cluster_field "$l" '.leader_id // empty' 2>/dev/null)" == "$l" ]] || continue
    ready "$l" || continue
    leader="$l"
    return 0
  done
  return 1
}

active_pageservers() {
  [[ "$(get 1 /control/v1/node | jq '[.[] | select(.availability == "Active")] | length')" == 3 ]]
}

container() { compose ps -q "storcon-$1"; }
acks_after() {  # acks_after TIME EXCLUDED_REPLICA: creates sent after TIME, acked not through it
  awk -v t="$1" -v x="$2" '$1 > t && $4 != x { n++ } END { print n + 0 }' "$acks"
}
have_acks_after() { (( $(acks_after "$1" "$2") >= acks_per_phase )); }
first_ack_after() {  # when the first create sent after TIME was answered with 201
  awk -v t="$1" '$1 > t { print $2; exit }' "$acks"
}

# --- the write load -----------------------------------------------------------------------------
# Tenant i of this run: the run's tag and i, as 32 hex digits. Each create is tried on replica
# (i mod 3) + 1, then on the next ones; a 201 is an acknowledgement, anything else a failure.
run_tag="$(printf '%08x' "$(( (($$ << 16) ^ RANDOM) & 0xffffffff ))")"
load() {
  local i=0 attempt n tid code sent msg
  while [[ ! -e "$stop" ]] && (( i < max_writes )); do
    i=$((i + 1))
    tid="$(printf '%s%024x' "$run_tag" "$i")"
    for attempt in 0 1 2; do
      n=$(( (i + attempt) % 3 + 1 ))
      sent=$(now)
      rm -f "$work/body"
      # A replica forwarding to a leader that just vanished may hold the request for its proxy
      # timeout (40 s); like a client with a deadline, give up after 5 s and try the next one.
      code="$(curl -s -o "$work/body" -w '%{http_code}' -m 5 --connect-timeout 1 \
        -X POST -H 'content-type: application/json' \
        -d "{\"new_tenant_id\":\"$tid\",\"placement_policy\":{\"Attached\":1}}" \
        "$(url "$n" /v1/tenant)" || true)"
      if [[ "$code" == 201 ]]; then
        echo "$sent $(now) $tid $n" >> "$acks"
        break
      fi
      msg="$(jq -r '.msg // empty' "$work/body" 2>/dev/null | tr -s ' \n' ' ' | cut -c1-120 || true)"
      echo "$sent $(now) $tid $n ${code:-000} $msg" >> "$fails"
    done
    sleep 0.1
  done
}

# --- 1, 2: up -----------------------------------------------------------------------------------
started_at=$(now)
log "project $project, ports ${port[1]} ${port[2]} ${port[3]}, network $subnet.0/24"
compose up -d >&2 2>"$work/up.err" || { cat "$work/up.err" >&2; die "compose up"; }
wait_for "$step_timeout" "a ready leader" find_leader
wait_for "$step_timeout" "three Active pageservers" active_pageservers
log "leader is storcon-$leader; pageservers Active"

# --- 3: load ------------------------------------------------------------------------------------
load &
load_pid=$!
t0=$(now)
wait_for "$step_timeout" "$acks_per_phase acknowledged writes" have_acks_after "$t0" none
log "load running: $(wc -l < "$acks") writes acknowledged"

# --- 4: kill the leader -------------------------------------------------------------------------
killed="$leader"
killed_container="$(container "$killed")"
docker kill --signal KILL "$killed_container" >/dev/null
# From when the process is gone: a create sent while `docker kill` ran may still be answered by
# the old leader, and would make the survivors look faster than they are.
is_stopped() { [[ "$(docker inspect "$killed_container" --format '{{.State.Running}}')" == false ]]; }
wait_for "$step_timeout" "storcon-$killed to stop" is_stopped
t_kill=$(now)
log "SIGKILLed storcon-$killed (the leader)"
wait_for "$step_timeout" "a new leader after the kill" find_leader "$killed"
t_new_leader=$(now)
kill_failover_ms=$(ms_between "$t_kill" "$t_new_leader")
log "storcon-$leader leads ${kill_failover_ms} ms after the kill"
wait_for "$step_timeout" "writes acknowledged through the survivors" have_acks_after "$t_kill" "$killed"
kill_first_ack_ms=$(ms_between "$t_kill" "$(first_ack_after "$t_kill")")
log "writes acknowledged through the survivors (first ${kill_first_ack_ms} ms after the kill)"

# --- 5: restart it ------------------------------------------------------------------------------
t_restart=$(now)
compose start "storcon-$killed" >/dev/null 2>&1 || die "compose start storcon-$killed"
wait_for "$step_timeout" "restarted storcon-$killed ready" ready "$killed"
restart_ready_ms=$(ms_between "$t_restart" "$(now)")
log "storcon-$killed started and ready ${restart_ready_ms} ms after the start command"

# --- 6: partition the leader --------------------------------------------------------------------
wait_for "$step_timeout" "a ready leader before the partition" find_leader
cut="$leader"
cut_container="$(container "$cut")"
network="$(docker inspect "$cut_container" \
  --format '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}')"
applied_at_cut="$(cluster_field "$cut" .last_applied)" || die "storcon-$cut's applied index"
docker network disconnect "$network" "$cut_container"
t_cut=$(now)
log "disconnected storcon-$cut (the leader) from $network"
wait_for "$step_timeout" "a new leader among the connected replicas" find_leader "$cut"
cut_failover_ms=$(ms_between "$t_cut" "$(now)")
log "storcon-$leader leads ${cut_failover_ms} ms after the disconnect"
wait_for "$step_timeout" "writes acknowledged through the connected replicas" \
  have_acks_after "$t_cut" "$cut"
cut_first_ack_ms=$(ms_between "$t_cut" "$(first_ack_after "$t_cut")")
log "writes acknowledged through the connected replicas (first ${cut_first_ack_ms} ms after the disconnect)"
acks_through_cut="$(awk -v a="$t_cut" -v x="$cut" '$1 > a && $4 == x { n++ } END { print n + 0 }' "$acks")"
(( acks_through_cut == 0 )) || die "storcon-$cut acknowledged $acks_through_cut writes while cut off"

# --- 7: reconnect -------------------------------------------------------------------------------
docker network connect --ip "$(ip_of "$cut")" --alias "storcon-$cut" "$network" "$cut_container"
t_reconnect=$(now)
log "reconnected storcon-$cut"
wait_for "$step_timeout" "a ready leader after the reconnect" find_leader
target_index="$(cluster_field "$leader" .last_applied)" || die "the leader's applied index"
# Writes were acknowledged while it was cut off, so it has entries to catch up on.
(( target_index > applied_at_cut )) || die "index $target_index is not past $applied_at_cut"
caught_up() {
  local applied
  ready "$cut" && applied="$(cluster_field "$cut" .last_applied)" && (( applied >= target_index ))
}
wait_for "$step_timeout" "storcon-$cut applied up to index $target_index" caught_up
catch_up_ms=$(ms_between "$t_reconnect" "$(now)")
log "storcon-$cut caught up from index $applied_at_cut to $target_index ${catch_up_ms} ms after the reconnect"

# --- 8: stop the load, verify -------------------------------------------------------------------
touch "$stop"
wait "$load_pid" || true
load_pid=""
wait_for "$step_timeout" "a ready leader for the verification" find_leader
acked="$(wc -l < "$acks")"
listed_through() {  # every tenant id the cluster lists, paged, asked through replica $1
  local after="" page
  : > "$work/listed-$1"
  while :; do
    page="$(get "$1" "/control/v1/tenant?limit=500${after:+&start_after=$after}")" || return 1
    jq -r '.[].tenant_id' <<< "$page" >> "$work/listed-$1"
    [[ "$(jq length <<< "$page")" == 500 ]] || return 0
    after="$(jq -r '.[-1].tenant_id' <<< "$page")"
  done
}
missing_total=0
for n in 1 2 3; do
  wait_for "$step_timeout" "the tenant list through storcon-$n" listed_through "$n"
  missing="$(awk '{ print $3 }' "$acks" | sort -u | comm -23 - <(sort -u "$work/listed-$n") | wc -l)"
  log "through storcon-$n: $(wc -l < "$work/listed-$n") tenants listed, $missing acknowledged missing"
  missing_total=$((missing_total + missing))
done
for n in 1 2 3; do
  state="$(docker inspect "$(container "$n")" --format '{{.State.Status}}')"
  [[ "$state" == running ]] || die "storcon-$n is $state at the end"
done

# --- 9: summary ---------------------------------------------------------------------------------
attempts_failed="$(wc -l < "$fails")"
writes_unacked="$(awk '{ print $3 }' "$fails" | sort -u | comm -23 - <(awk '{ print $3 }' "$acks" | sort -u) | wc -l)"
fail_codes="$(awk '{ c[$5]++ } END { for (k in c) printf "%s:%d ", k, c[k] }' "$fails")"
ack_latency="$(awk '{ d = ($2 - $1) * 1000; s += d; if (d > m) m = d } END { if (NR) printf "mean %d ms, max %d ms", s / NR, m }' "$acks")"
cat <<SUMMARY
storcon compose check summary
  run time                          $(ms_between "$started_at" "$(now)") ms
  leader SIGKILLed                  storcon-$killed
  time to new ready leader          ${kill_failover_ms} ms
  first write acked after kill      ${kill_first_ack_ms} ms
  killed replica start to ready     ${restart_ready_ms} ms
  leader disconnected               storcon-$cut
  time to new ready leader          ${cut_failover_ms} ms
  first write acked after it        ${cut_first_ack_ms} ms
  catch-up after reconnect          ${catch_up_ms} ms (applied index $applied_at_cut to $target_index)
  writes acknowledged               $acked ($ack_latency per acknowledged request)
  failed attempts                   $attempts_failed (${fail_codes:-none}; status 000 = no answer)
  writes never acknowledged         $writes_unacked
  acknowledged writes missing       $missing_total (summed over the three replicas asked)
SUMMARY
if [[ -n "${CHECK_SHOW_FAILURES:-}" ]]; then
  log "failed attempts (sent answered tenant replica status msg):"
  cat "$fails" >&2
fi
(( missing_total == 0 )) || die "$missing_total acknowledged writes missing"
log "PASSED"
