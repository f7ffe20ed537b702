#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the `slurm` tests and for trying
# profiles/slurm by hand. Debian's own packages, no systemd, everything under one state folder.
#
#   bash tests/slurm_cluster.sh start DIR   # installs the packages when missing (apt-get), starts
#                                           # munged, slurmctld and slurmd, waits for the node
#   export SLURM_CONF=DIR/slurm.conf        # then sinfo, sbatch, snakemake --profile profiles/slurm
#   bash tests/slurm_cluster.sh stop DIR    # cancels the jobs, stops the daemons by their PIDs
#
# Run as root (apt-get, munged as user munge, slurmd). While it runs, /etc/slurm/slurm.conf links
# to DIR/slurm.conf (jobs' own srun calls need it there; see link_config). The node has the machine's CPUs and memory
# (from `slurmd -C`) and $SLURM_TEST_GPUS fake GPUs (default 2): character devices made with
# mknod, so SLURM schedules and allocates them (a GPU without a File= would drain the node);
# there is no CUDA behind them. Partitions: `cpu` (default) and `gpu`, both on the one node.
# No slurmdbd, so `sacct` does not work: use `--slurm-status-command squeue` (MinJobAge is
# $SLURM_TEST_MIN_JOB_AGE, default 3600 s, so squeue and `scontrol show job` keep every job of a
# test run). Finished jobs are also written to DIR/log/jobcomp.log.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
conf=$dir/slurm.conf
export SLURM_CONF=$conf

log() { echo "slurm_cluster: $*" >&2; }

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$dir/apt.log" 2>&1 || {
        apt-get update -qq >>"$dir/apt.log" 2>&1
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$dir/apt.log" 2>&1
    } || { cat "$dir/apt.log" >&2; log "apt-get install failed"; exit 1; }
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

alive() { [[ -f $dir/$1.pid ]] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

write_config() {
    local gpus=${SLURM_TEST_GPUS:-2} min_job_age=${SLURM_TEST_MIN_JOB_AGE:-3600}
    # This machine as slurmd sees it, renamed to localhost (the name slurmd -N gives itself).
    local node
    node=$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //')
    mkdir -p "$dir/ctld" "$dir/spool" "$dir/log" "$dir/dev"
    local gres_lines="" i
    for ((i = 0; i < gpus; i++)); do
        [[ -e $dir/dev/gpu$i ]] || mknod "$dir/dev/gpu$i" c 1 3   # a character device (like /dev/null)
        gres_lines+="NodeName=localhost Name=gpu File=$dir/dev/gpu$i"$'\n'
    done
    printf '%s' "$gres_lines" >"$dir/gres.conf"
    local gres=""
    ((gpus > 0)) && gres="Gres=gpu:$gpus"
    cat >"$conf" <<EOF
# Written by tests/slurm_cluster.sh: a one-node test cluster.
ClusterName=doracle-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$munge_dir/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/ctld/slurmctld.pidfile
SlurmdPidFile=$dir/spool/slurmd.pidfile
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=$min_job_age
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 $node $gres State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
EOF
}

# The executor plugin's job step removes SLURM_* variables, SLURM_CONF included, before its srun
# (snakemake-executor-plugin-slurm issue 164), so the clients inside a job find the configuration
# only at the default path: link it there while the cluster runs (never over another cluster's).
default_conf=/etc/slurm/slurm.conf
link_config() {
    if [[ -L $default_conf && $(readlink "$default_conf") == "$conf" ]]; then return 0; fi
    local other other_pid
    if [[ -L $default_conf ]]; then   # left by a test cluster that was never stopped?
        other=$(readlink "$default_conf")
        other_pid=$(cat "$(dirname "$other")/slurmctld.pid" 2>/dev/null || true)
        if [[ ! -e $other ]] || { head -1 "$other" | grep -q "tests/slurm_cluster.sh" \
            && ! { [[ -n $other_pid ]] && kill -0 "$other_pid" 2>/dev/null; }; }; then
            log "removing the stale link $default_conf -> $other"
            rm -f "$default_conf"
        fi
    fi
    if [[ -e $default_conf || -L $default_conf ]]; then
        log "$default_conf exists and is not this cluster's: not starting a second cluster here"
        exit 1
    fi
    mkdir -p "$(dirname "$default_conf")"
    ln -s "$conf" "$default_conf"
}

unlink_config() {
    if [[ -L $default_conf && $(readlink "$default_conf") == "$conf" ]]; then rm -f "$default_conf"; fi
}

# munged runs as user munge, which must reach its folder: DIR may sit below a private one (pytest's
# tmp folders are 0700), so it gets its own under /tmp, named in DIR/munge.dir.
munge_folder() {
    if [[ -f $dir/munge.dir && -d $(cat "$dir/munge.dir") ]]; then
        munge_dir=$(cat "$dir/munge.dir")
    else
        munge_dir=$(mktemp -d /tmp/slurm-munge.XXXXXX)
        echo "$munge_dir" >"$dir/munge.dir"
    fi
}

start_munge() {
    alive munged && return 0
    [[ -f $munge_dir/munge.key ]] || cp /etc/munge/munge.key "$munge_dir/munge.key" 2>/dev/null \
        || dd if=/dev/urandom of="$munge_dir/munge.key" bs=1 count=128 status=none
    chown -R munge:munge "$munge_dir"
    chmod 0755 "$munge_dir"   # the socket needs x for all; the key stays 0600
    chmod 0600 "$munge_dir/munge.key"
    setpriv --reuid=munge --regid=munge --init-groups -- munged --foreground \
        --socket="$munge_dir/munge.socket" --key-file="$munge_dir/munge.key" \
        --pid-file="$munge_dir/munged.pidfile" --seed-file="$munge_dir/munged.seed" \
        --log-file="$munge_dir/munged.log" </dev/null >>"$dir/log/munged.out" 2>&1 &
    echo $! >"$dir/munged.pid"
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -S $munge_dir/munge.socket ]] && return 0
        alive munged || break
        sleep 0.1
    done
    cat "$dir/log/munged.out" >&2 || true
    log "munged did not start"
    exit 1
}

start() {
    [[ $EUID -eq 0 ]] || { log "run as root"; exit 1; }
    if alive slurmctld && alive slurmd && alive munged; then
        log "already running (SLURM_CONF=$conf)"
        return 0
    fi
    local t0=$SECONDS
    install_packages
    id munge >/dev/null 2>&1 || { log "no user munge (is the munge package installed?)"; exit 1; }
    mkdir -p "$dir/log"
    link_config
    munge_folder
    [[ -f $conf ]] && alive slurmctld || write_config
    start_munge
    alive slurmctld || {
        slurmctld -D -f "$conf" </dev/null >>"$dir/log/slurmctld.out" 2>&1 &
        echo $! >"$dir/slurmctld.pid"
    }
    alive slurmd || {
        slurmd -D -N localhost -f "$conf" </dev/null >>"$dir/log/slurmd.out" 2>&1 &
        echo $! >"$dir/slurmd.pid"
    }
    local i state=""
    for ((i = 0; i < 120; i++)); do
        state=$(sinfo -h -N -n localhost -o %T 2>/dev/null | head -1) || true
        case $state in
            idle | mixed | allocated) break ;;
        esac
        for d in munged slurmctld slurmd; do
            alive "$d" || { tail -n 20 "$dir/log/$d.out" >&2 || true; log "$d died"; stop; exit 1; }
        done
        sleep 0.5
    done
    case $state in
        idle | mixed | allocated) ;;
        *)
            scontrol show node localhost >&2 || true
            tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
            log "the node did not become idle (state: ${state:-unknown})"
            stop
            exit 1
            ;;
    esac
    log "up in $((SECONDS - t0)) s: node localhost $state; export SLURM_CONF=$conf"
}

stop() {
    if alive slurmctld; then
        scancel --full --quiet -u "$(id -un)" 2>/dev/null || true   # leave no job steps behind
        local i
        for ((i = 0; i < 20; i++)); do
            [[ -z $(squeue -h -t running,completing 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    local d pid
    for d in slurmd slurmctld munged; do
        [[ -f $dir/$d.pid ]] || continue
        pid=$(cat "$dir/$d.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/$d.pid"
    done
    unlink_config
    if [[ -f $dir/munge.dir ]]; then
        rm -rf -- "$(cat "$dir/munge.dir")"
        rm -f "$dir/munge.dir"
    fi
    log "stopped"
}

status() {
    local d ok=0
    for d in munged slurmctld slurmd; do
        if alive "$d"; then echo "$d: running (pid $(cat "$dir/$d.pid"))"; else echo "$d: stopped"; ok=1; fi
    done
    ((ok == 0)) && sinfo
    return $ok
}

case $cmd in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) usage ;;
esac
