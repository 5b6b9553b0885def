#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests and for trying profiles/slurm.
#
#   scripts/slurm_local.sh start    install the Debian packages if missing, start munged,
#                                   slurmctld and slurmd on localhost, wait until a test job runs
#   scripts/slurm_local.sh stop     cancel this cluster's jobs, stop the three daemons (by pid file)
#   scripts/slurm_local.sh status   exit 0 if the cluster answers and its node is usable
#
# Needs root (SlurmUser=root; munged runs as user munge). No systemd and no cgroups are used:
# munged gets its own key, socket and pid file in a private folder, and slurm.conf says
# AuthInfo=socket=<that socket>. Everything lives under $CLOAKBENCH_SLURM_DIR (default
# /tmp/cloakbench-slurm). The node offers twice the machine's cores ($CLOAKBENCH_SLURM_CPUS
# to change that) and its memory minus 1 GB, in one partition, `debug`. The config is ALSO
# written to /etc/slurm/slurm.conf, because the job-step plugin strips SLURM_CONF before
# `srun` runs inside a job (../shared/STACK_NOTES.md); an /etc/slurm/slurm.conf not written by
# this script is never overwritten. Other settings: $CLOAKBENCH_SLURM_PORT (slurmctld, 6817;
# slurmd uses the next port), $CLOAKBENCH_SLURM_PARTITION.
#
# start and stop are idempotent; start exits non-zero with the daemons' log tails when the
# cluster cannot come up (callers must fail, not skip).
set -euo pipefail

DIR=${CLOAKBENCH_SLURM_DIR:-/tmp/cloakbench-slurm}
CTLD_PORT=${CLOAKBENCH_SLURM_PORT:-6817}
SLURMD_PORT=$((CTLD_PORT + 1))
PARTITION=${CLOAKBENCH_SLURM_PARTITION:-debug}
ETC_CONF=/etc/slurm/slurm.conf
MARKER="# written by cloakbench scripts/slurm_local.sh"
PACKAGES=(slurm-wlm slurmctld slurmd slurm-client munge)
COMMANDS=(munged munge unmunge slurmctld slurmd sbatch squeue sinfo scontrol scancel srun)
SOCKET="$DIR/munge/munge.socket"
export SLURM_CONF="$DIR/slurm.conf"

say() { echo "slurm_local: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

pid_alive() {  # pid_alive <pidfile>
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

missing_commands() {
    local c missing=()
    for c in "${COMMANDS[@]}"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
    echo "${missing[@]:-}"
}

install_packages() {
    [[ -z "$(missing_commands)" ]] && return 0
    command -v apt-get >/dev/null || die "missing $(missing_commands) and no apt-get to install ${PACKAGES[*]}"
    say "installing ${PACKAGES[*]} (missing: $(missing_commands))"
    local apt=(apt-get install -y -q --no-install-recommends "${PACKAGES[@]}")
    # Package scripts must not try to start the system's own daemons (no systemd here).
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" >"$DIR/apt.log" 2>&1; then
        say "apt-get install failed; running apt-get update and retrying"
        apt-get update -q >>"$DIR/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" >>"$DIR/apt.log" 2>&1 \
            || { tail -20 "$DIR/apt.log" >&2; die "could not install ${PACKAGES[*]} (log: $DIR/apt.log)"; }
    fi
    [[ -z "$(missing_commands)" ]] || die "still missing after install: $(missing_commands)"
}

node_hardware() {  # "CPUs RealMemoryMB" for the node line of slurm.conf
    local line cpus mem
    line=$(slurmd -C 2>/dev/null | head -1) || true
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$line")
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$line")
    [[ -n $cpus ]] || cpus=$(nproc)
    [[ -n $mem ]] || mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))
    # Twice the cores by default: test jobs run single-threaded (OMP_NUM_THREADS=1) while the
    # rules reserve 2 threads, and overlapping jobs hide Snakemake's status-polling gaps.
    echo "${CLOAKBENCH_SLURM_CPUS:-$((2 * cpus))} $(( mem > 2048 ? mem - 1024 : mem ))"
}

write_config() {
    local cpus mem
    read -r cpus mem < <(node_hardware)
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat >"$DIR/slurm.conf" <<EOF
$MARKER (state in $DIR); removed by 'scripts/slurm_local.sh stop'
ClusterName=cloakbench
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
MpiDefault=none
# The node's CPUs and memory are what this file says (CPUs may exceed the real cores).
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
# Reject impossible requests at submission instead of leaving them pending forever.
EnforcePartLimits=ALL
# Finished jobs stay visible to squeue (Snakemake's status command here) for 10 minutes.
MinJobAge=600
ReturnToService=2
InactiveLimit=0
KillWait=5
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    mkdir -p /etc/slurm
    if [[ -e $ETC_CONF ]] && ! grep -qF "$MARKER" "$ETC_CONF"; then
        die "$ETC_CONF exists and was not written by this script; not overwriting a real cluster's config"
    fi
    cp "$DIR/slurm.conf" "$ETC_CONF"
}

start_munge() {
    install -d -o munge -g munge -m 0711 "$DIR/munge"  # socket needs x for all
    if [[ ! -s $DIR/munge/munge.key ]]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$DIR/munge/munge.key"
    chmod 0400 "$DIR/munge/munge.key"
    if ! pid_alive "$DIR/munge/munged.pid"; then
        runuser -u munge -- munged --key-file="$DIR/munge/munge.key" --socket="$SOCKET" \
            --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
            --seed-file="$DIR/munge/munged.seed" \
            </dev/null >>"$DIR/log/daemons.out" 2>&1 9>&- \
            || { tail -5 "$DIR/munge/munged.log" >&2 || true; die "munged did not start"; }
    fi
    munge -n -S "$SOCKET" | unmunge -S "$SOCKET" >/dev/null \
        || die "munge credential round trip failed (socket $SOCKET, log $DIR/munge/munged.log)"
}

cluster_ready() {  # the controller answers and the node can run jobs
    local state
    state=$(timeout 10 sinfo -h -n localhost -o %T 2>/dev/null | head -1) || return 1
    [[ $state == idle* || $state == mixed* || $state == allocated* ]]
}

logs_tail() {
    local f
    for f in "$DIR/log/daemons.out" "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" "$DIR/munge/munged.log"; do
        [[ -f $f ]] && { echo "--- $f"; tail -15 "$f"; }
    done >&2
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "must run as root (SlurmUser=root, munged runs as user munge)"
    mkdir -p "$DIR"
    # The lock serialises concurrent start/stop calls. Daemons are started with fd 9 closed
    # (9>&-) so that they do not hold it, and with their output in a file so that they do not
    # hold a caller's pipes open (a caller capturing our output would wait forever).
    exec 9>"$DIR/.lock"
    flock -w 300 9 || die "another slurm_local.sh holds $DIR/.lock"
    install_packages
    if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid" && cluster_ready; then
        say "already running (SLURM_CONF=$DIR/slurm.conf)"
        return 0
    fi
    write_config
    start_munge
    if ! pid_alive "$DIR/slurmctld.pid"; then
        slurmctld -i -f "$DIR/slurm.conf" </dev/null >>"$DIR/log/daemons.out" 2>&1 9>&- || { logs_tail; die "slurmctld did not start"; }
    fi
    if ! pid_alive "$DIR/slurmd.pid"; then
        slurmd -N localhost -f "$DIR/slurm.conf" </dev/null >>"$DIR/log/daemons.out" 2>&1 9>&- || { logs_tail; die "slurmd did not start"; }
    fi
    local i state
    for i in $(seq 1 60); do
        cluster_ready && break
        state=$(sinfo -h -n localhost -o %T 2>/dev/null | head -1 || true)
        if [[ $state == down* || $state == drain* ]]; then
            scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
        fi
        sleep 0.5
    done
    if ! cluster_ready; then
        logs_tail
        die "the node did not become idle within 30 s (sinfo: $(sinfo -h -o '%T %E' 2>&1 | head -1))"
    fi
    # A real job end to end (controller -> slurmd -> step), not only the controller's view.
    if ! timeout 60 srun -N1 -n1 -t 1 --mem 16 -J slurm_local_check true </dev/null >"$DIR/log/check.out" 2>&1; then
        cat "$DIR/log/check.out" >&2
        logs_tail
        die "a test job (srun true) failed"
    fi
    say "cluster up: partition $PARTITION, $(sinfo -h -o '%c CPUs, %m MB' | head -1), SLURM_CONF=$DIR/slurm.conf"
}

stop_daemon() {  # stop_daemon <pidfile> <name>
    local pidfile=$1 name=$2 pid i
    pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name ($pid) ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    [[ -d $DIR ]] || { say "nothing to stop ($DIR does not exist)"; return 0; }
    exec 9>"$DIR/.lock"
    flock -w 300 9 || die "another slurm_local.sh holds $DIR/.lock"
    if pid_alive "$DIR/slurmctld.pid"; then
        local jobs
        jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086
            timeout 10 scancel $jobs 2>/dev/null || true
            sleep 1
        fi
    fi
    stop_daemon "$DIR/slurmd.pid" slurmd
    stop_daemon "$DIR/slurmctld.pid" slurmctld
    stop_daemon "$DIR/munge/munged.pid" munged
    if [[ -f $ETC_CONF ]] && grep -qF "$MARKER" "$ETC_CONF"; then rm -f "$ETC_CONF"; fi
    say "stopped"
}

cmd_status() {
    if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid" && cluster_ready; then
        sinfo
        return 0
    fi
    say "not running"
    return 1
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
