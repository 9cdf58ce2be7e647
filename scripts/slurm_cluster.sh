#!/usr/bin/env bash
# A one-node SLURM test cluster with one fake GPU, from Debian's packages, without systemd.
#
#   scripts/slurm_cluster.sh start [--force]   write /etc/slurm/{slurm,gres}.conf, start munged,
#                                              slurmctld and slurmd, wait until the node is idle
#   scripts/slurm_cluster.sh stop              cancel all jobs, stop the daemons
#   scripts/slurm_cluster.sh status            sinfo + squeue (exit 1 if slurmctld is down)
#
# Needs root and `apt-get install --no-install-recommends munge slurm-client slurmctld slurmd`
# (scripts/setup.sh --slurm). For CI and test machines only: it writes /etc/slurm/slurm.conf and
# refuses to replace one that it did not write, unless --force is given.
# State, spool, logs and pid files live under $DRM_SLURM_DIR (default /var/lib/drm-slurm).
# Every wait is bounded; on failure the daemons' log tails are printed and it exits non-zero.
set -euo pipefail

CONF_DIR=/etc/slurm
DIR=${DRM_SLURM_DIR:-/var/lib/drm-slurm}
PARTITION=debug
MARK="# drm-test-cluster: written by scripts/slurm_cluster.sh (safe to overwrite by it)"
START_TIMEOUT=${DRM_SLURM_START_TIMEOUT:-60}
NODE=$(hostname -s)
T="timeout -k 2 15"   # every client call (sinfo, scontrol, ...) is bounded

log() { echo "slurm_cluster: $*" >&2; }

tails() {
  local f
  for f in /var/log/munge/munged.log "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"; do
    [ -f "$f" ] || continue
    echo "----- last lines of $f -----" >&2
    tail -n 25 "$f" >&2 || true
  done
}

fail() { log "ERROR: $*"; exit 1; }   # before any daemon was touched
die() { log "ERROR: $*"; tails; exit 1; }

# Waits until "$@" succeeds, at most $1 seconds (polls every 0.5 s).
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.5
  done
}

# A live (not zombie) process whose pid is in file $1. The daemons daemonize and, without an
# init that reaps orphans (containers), a killed one stays a zombie that `kill -0` still sees.
proc_alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
proc_gone() { ! proc_alive "$1"; }
# ... and runs the daemon the file is named after (not a process that reused a stale pid).
pid_alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && proc_alive "$pid" && grep -qa "$(basename "$1" .pid)" "/proc/$pid/cmdline"
}
munge_ok() { timeout 5 munge -n </dev/null 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }
ctld_up() { $T scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state() { $T sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1; }
queue_empty() { [ -z "$($T squeue -h -t PD,R,CG,S,CF -o %A 2>/dev/null)" ]; }
node_ready() { case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; esac; return 1; }

# Sends SIGTERM, then SIGKILL, to the process in pid file $1 (never by name); bounded.
kill_pidfile() {
  local f=$1 pid
  pid_alive "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for 15 proc_gone "$pid"; then
    log "pid $pid ($f) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 5 proc_gone "$pid" || log "pid $pid is still alive"
  fi
  rm -f "$f"
}

require() {
  [ "$(id -u)" = 0 ] || fail "must run as root (it writes $CONF_DIR and starts daemons)"
  local b missing=()
  for b in munged munge unmunge slurmctld slurmd sbatch sinfo squeue scontrol scancel; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || missing+=("$b")
  done
  [ ${#missing[@]} = 0 ] || fail "missing ${missing[*]}: apt-get install --no-install-recommends munge slurm-client slurmctld slurmd (or scripts/setup.sh --slurm)"
  PATH=$PATH:/usr/sbin:/sbin
}

write_configs() {
  local cpus mem_mb real_mb tmp changed=0
  cpus=$(nproc)
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  real_mb=$((mem_mb * 95 / 100))   # a bit below the machine's memory, or slurmd drains the node
  tmp=$(mktemp -d)
  cat >"$tmp/slurm.conf" <<EOF
$MARK
# One node ($NODE) with $cpus CPUs, ${real_mb} MB and one fake GPU; no accounting database.
ClusterName=drmtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups here (containers, no systemd): plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
# Quick scheduling and fast failure handling for tests.
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
# squeue shows finished jobs this long (s); snakemake's squeue status check relies on it.
MinJobAge=300
ReturnToService=2
SlurmdTimeout=30
KillWait=2
InactiveLimit=0
Waittime=0
JobRequeue=1
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb Gres=gpu:fake:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$tmp/gres.conf" <<EOF
$MARK
AutoDetect=off
NodeName=$NODE Name=gpu Type=fake File=/dev/null
EOF
  mkdir -p "$CONF_DIR"
  local f
  for f in slurm.conf gres.conf; do
    if [ -e "$CONF_DIR/$f" ] && ! head -n 1 "$CONF_DIR/$f" | grep -qF "$MARK" && [ "$FORCE" != 1 ]; then
      rm -rf "$tmp"
      fail "$CONF_DIR/$f exists and was not written by this script; not replacing it (use --force on a test machine)"
    fi
  done
  for f in slurm.conf gres.conf; do
    if ! cmp -s "$tmp/$f" "$CONF_DIR/$f"; then
      install -m 0644 "$tmp/$f" "$CONF_DIR/$f"
      changed=1
    fi
  done
  rm -rf "$tmp"
  CONFIG_CHANGED=$changed
}

start_munge() {
  munge_ok && return 0
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    install -d -o munge -g munge -m 0700 /etc/munge
    runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
  fi
  log "starting munged"
  # --force: take over a stale socket left by a killed munged.
  runuser -u munge -- /usr/sbin/munged --force || die "munged did not start"
  touch "$DIR/run/munged.ours"
  wait_for 10 munge_ok || die "munge does not work 10 s after starting munged"
}

do_start() {
  require
  mkdir -p "$DIR"/{state,spool,log,run}
  write_configs
  if [ "$CONFIG_CHANGED" = 1 ] && { pid_alive "$DIR/run/slurmctld.pid" || pid_alive "$DIR/run/slurmd.pid"; }; then
    log "configuration changed: restarting the daemons"
    stop_slurm
  fi
  start_munge
  if ! pid_alive "$DIR/run/slurmctld.pid"; then
    log "starting slurmctld"
    # -i: ignore unreadable state files left by an earlier run.
    /usr/sbin/slurmctld -i || die "slurmctld did not start"
  fi
  wait_for 20 ctld_up || die "slurmctld does not answer 20 s after starting"
  if ! pid_alive "$DIR/run/slurmd.pid"; then
    log "starting slurmd"
    /usr/sbin/slurmd -N "$NODE" || die "slurmd did not start"
  fi
  local end=$((SECONDS + START_TIMEOUT)) resumed=0 state
  until node_ready; do
    state=$(node_state)
    if [ $SECONDS -gt $((end - START_TIMEOUT + 3)) ]; then
      pid_alive "$DIR/run/slurmctld.pid" || die "slurmctld exited"
      pid_alive "$DIR/run/slurmd.pid" || die "slurmd exited"
    fi
    if [ $resumed = 0 ] && [ $SECONDS -gt $((end - START_TIMEOUT + 5)) ] && [[ "$state" =~ down|drain ]]; then
      # A node left DOWN/DRAINED by an earlier run; ReturnToService=2 does not undo a drain.
      log "node $NODE is '$state'; resuming it"
      $T scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
      resumed=1
    fi
    if [ $SECONDS -ge $end ]; then
      $T sinfo -N -o '%N %T %E' >&2 || true
      die "node $NODE is not idle after ${START_TIMEOUT} s (state: '${state:-unknown}')"
    fi
    sleep 0.5
  done
  $T sinfo -h -N -n "$NODE" -o 'node=%N cpus=%c memory_mb=%m gres=%G partition=%P state=%T'
}

# Stops slurmctld and slurmd (cancelling all jobs first); leaves munged alone.
stop_slurm() {
  if ctld_up; then
    local jobs
    jobs=$($T squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
    if [ -n "${jobs// /}" ]; then
      log "cancelling jobs: $jobs"
      # shellcheck disable=SC2086
      $T scancel $jobs >/dev/null 2>&1 || true
      wait_for 20 queue_empty || log "some jobs did not finish within 20 s"
    fi
    log "scontrol shutdown"
    $T scontrol shutdown >/dev/null 2>&1 || true
    wait_for 20 proc_gone "$(cat "$DIR/run/slurmctld.pid" 2>/dev/null || echo 0)" || true
  fi
  kill_pidfile "$DIR/run/slurmd.pid"
  kill_pidfile "$DIR/run/slurmctld.pid"
}

do_stop() {
  require
  stop_slurm
  if [ -e "$DIR/run/munged.ours" ]; then
    kill_pidfile /run/munge/munged.pid
    rm -f "$DIR/run/munged.ours"
  fi
  log "stopped"
}

do_status() {
  PATH=$PATH:/usr/sbin:/sbin
  if ! ctld_up; then
    echo "slurmctld is not running (or does not answer)"
    return 1
  fi
  $T sinfo -N -o '%N %P %c %m %G %T %E'
  echo
  $T squeue -o '%.8i %.9P %.20j %.8u %.10T %.10M %R'
}

FORCE=0
cmd=${1:-}
shift || true
for a in "$@"; do
  case $a in
    --force) FORCE=1 ;;
    *) echo "usage: $0 start [--force] | stop | status" >&2; exit 2 ;;
  esac
done
case $cmd in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  *) echo "usage: $0 start [--force] | stop | status" >&2; exit 2 ;;
esac
