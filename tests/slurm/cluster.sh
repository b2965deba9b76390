#!/usr/bin/env bash
# A throwaway single-node Slurm cluster (munge, slurmctld, slurmd) and an MLflow tracking server, on
# localhost only, for tests/slurm/test_slurm.py. Needs root and Debian's slurmctld, slurmd, slurm-client and
# munge packages. Every file lives under STATE, except munge's, which live in a /tmp folder that user munge
# can reach (named in STATE/munge.dir); the system's /etc/slurm and /run/munge are not touched.
#
#   tests/slurm/cluster.sh up STATE [MLFLOW_PORT]   # start everything; prints the environment to use
#   tests/slurm/cluster.sh down STATE               # stop everything started by `up`, by pid file
#
# Clients find the cluster through SLURM_CONF=STATE/slurm.conf (written by `up`) and, because the SLURM
# jobstep plugin strips SLURM_* from the srun it starts inside each job, through a link /etc/slurm/slurm.conf
# to it; `up` refuses to replace a slurm.conf it did not make. Finished jobs are recorded
# by jobcomp/filetxt in STATE/jobcomp.txt, which `sacct --completion` reads without a database.
set -euo pipefail

cmd=${1:?usage: cluster.sh up|down STATE [MLFLOW_PORT]}
STATE=${2:?usage: cluster.sh up|down STATE [MLFLOW_PORT]}
PORT=${3:-5077}
export SLURM_CONF=$STATE/slurm.conf

log() { echo "cluster.sh: $*" >&2; }

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.5 s until it succeeds
    local limit=$1 what=$2 t=0
    shift 2
    until "$@" >/dev/null 2>&1; do
        sleep 0.5
        t=$((t + 1))
        if [ $t -ge $((limit * 2)) ]; then
            log "$what did not come up within ${limit} s"
            return 1
        fi
    done
}

stop_pidfile() {  # stop_pidfile FILE NAME: SIGTERM the pid (its process group for setsid'd ones), wait, SIGKILL
    local file=$1 name=$2 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM; killing it"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

up() {
    for tool in munged slurmctld slurmd sbatch; do
        command -v "$tool" >/dev/null || { log "$tool not found (apt-get install slurmctld slurmd slurm-client munge)"; exit 3; }
    done
    [ "$(id -u)" = 0 ] || { log "must run as root"; exit 3; }
    mkdir -p "$STATE"
    chmod 0755 "$STATE"
    local munge
    munge=$(mktemp -d /tmp/statemix-munge.XXXXXX)
    echo "$munge" > "$STATE/munge.dir"
    chmod 0755 "$munge"
    chown munge:munge "$munge"
    dd if=/dev/urandom of="$munge/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$munge/munge.key"
    chmod 0400 "$munge/munge.key"
    runuser -u munge -- munged --socket="$munge/munge.socket" --key-file="$munge/munge.key" \
        --pid-file="$munge/munged.pid" --log-file="$munge/munged.log" --seed-file="$munge/munged.seed"
    cp "$munge/munged.pid" "$STATE/munged.pid"
    wait_for 10 munged munge --socket="$munge/munge.socket" -n

    local cpus mem
    cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -1)
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
    mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log"
    cat > "$SLURM_CONF" <<CONF
ClusterName=statemix-test
SlurmctldHost=localhost
SlurmctldPort=6917
SlurmdPort=6918
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.txt
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=60 State=UP
CONF
    if [ -e /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" != "$SLURM_CONF" ]; then
        log "/etc/slurm/slurm.conf exists and is not ours; not starting a test cluster over it"
        exit 3
    fi
    mkdir -p /etc/slurm
    ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
    slurmctld
    slurmd -N localhost
    wait_for 30 "the node" sh -c '[ "$(sinfo -h -o %T | head -1)" = idle ]'
    log "slurm up: node localhost, $cpus CPUs, $mem MB, partition debug"

    mkdir -p "$STATE/mlflow"
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true setsid "${MLFLOW:-mlflow}" server \
        --host 127.0.0.1 --port "$PORT" --workers 1 \
        --backend-store-uri "sqlite:///$STATE/mlflow/mlflow.db" \
        --artifacts-destination "$STATE/mlflow/artifacts" \
        > "$STATE/log/mlflow.log" 2>&1 < /dev/null &
    echo $! > "$STATE/mlflow.pid"
    wait_for 90 "mlflow server" python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health')"
    log "mlflow server up: http://127.0.0.1:$PORT"
    echo "SLURM_CONF=$SLURM_CONF"
    echo "MLFLOW_TRACKING_URI=http://127.0.0.1:$PORT"
}

down() {
    stop_pidfile "$STATE/mlflow.pid" "mlflow server"
    stop_pidfile "$STATE/slurmd.pid" slurmd
    stop_pidfile "$STATE/slurmctld.pid" slurmctld
    stop_pidfile "$STATE/munged.pid" munged
    if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$SLURM_CONF" ]; then
        rm -f /etc/slurm/slurm.conf
    fi
    if [ -f "$STATE/munge.dir" ]; then
        rm -rf "$(cat "$STATE/munge.dir")"
        rm -f "$STATE/munge.dir"
    fi
    log "down"
}

case $cmd in
    up) up ;;
    down) down ;;
    *) log "unknown command $cmd; allowed: up, down"; exit 2 ;;
esac
