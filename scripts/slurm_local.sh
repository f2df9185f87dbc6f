#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the Slurm integration tests and for trying
# hydra/launcher=slurm without a real cluster. Needs root and Debian/Ubuntu packages.
#   scripts/slurm_local.sh up      # install (apt) slurmctld slurmd slurm-client munge, configure, start
#   scripts/slurm_local.sh down    # cancel jobs, stop the daemons
#   scripts/slurm_local.sh status
# ProctrackType=proctrack/linuxproc and TaskPlugin=task/none: no cgroups or systemd needed (containers).
set -euo pipefail

CONF_DIR=/etc/slurm
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "slurm_local.sh: needs root (it installs packages and starts daemons); run it with sudo" >&2
        exit 2
    fi
}

install() {
    local missing=()
    for cmd in slurmctld slurmd sbatch munged; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "slurm_local.sh: installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            slurmctld slurmd slurm-client munge >/dev/null
    fi
}

configure() {
    mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/run/slurm
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    cat > "$CONF_DIR/slurm.conf" <<CONF
# written by tl-lightning scripts/slurm_local.sh
ClusterName=tl-local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
JobRequeue=1
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/var/run/slurm/slurmctld.pid
SlurmdPidFile=/var/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerParameters=sched_interval=2
KillWait=10
MinJobAge=300
InactiveLimit=0
Waittime=0
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
}

start() {
    local fresh=0
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
    pgrep -x slurmctld >/dev/null || { slurmctld; fresh=1; }
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 1 30); do
        state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
        case "$state" in
            idle*|mixed*|allocated*)
                if [ "$fresh" = 1 ] && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
                    # a controller started now restores its saved jobs; their processes ended with the
                    # daemons that ran them, yet they would hold the node's CPUs until their time limit
                    echo "slurm_local.sh: cancelling jobs left by an earlier run: $(squeue -h -o %i | tr '\n' ' ')"
                    scancel --user=root >/dev/null 2>&1 || true
                fi
                echo "slurm_local.sh: node $NODE is $state ($CPUS CPUs, ${MEM_MB} MB)"; return 0 ;;
            down*|drain*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    echo "slurm_local.sh: the node did not become idle; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
    exit 1
}

case "${1:-}" in
    up) need_root; install; configure; start ;;
    down)
        need_root
        scancel --user=root >/dev/null 2>&1 || true
        pkill -x slurmd || true
        pkill -x slurmctld || true
        pkill -x munged || true
        echo "slurm_local.sh: stopped" ;;
    status) sinfo && squeue ;;
    *) echo "usage: scripts/slurm_local.sh up|down|status" >&2; exit 2 ;;
esac
