#!/usr/bin/env bash
# dsrun --slurm on a single-host Slurm: starts munged (if none runs), slurmctld and slurmd on
# localhost with a private configuration and ports, then inside `salloc -n 2` runs a 2-task
# dsrt cluster (a head and a worker, each an srun step) that must answer a prompt; stops the
# daemons it started. Exit 77 (ctest: skipped, with the reason printed) where Slurm cannot
# run: not root, or slurm-wlm / munge not installed (scripts/setup.sh installs them).
# Usage: slurm_single_host.sh BUILD_DIR        (the model, tiny-llama, is made with dsgen)
set -euo pipefail
build=$1

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "single-host Slurm needs root (slurmd runs jobs as their users)"
for t in slurmctld slurmd munged salloc srun sinfo; do
  command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || skip "$t is not installed (apt install slurm-wlm munge)"
done
[ -r /etc/munge/munge.key ] || skip "no munge key (/etc/munge/munge.key)"

dir=$(mktemp -d /tmp/dsrt-slurm.XXXXXX)
ctld_port=$((17000 + $$ % 1000 * 2))
slurmd_port=$((ctld_port + 1))
dsrt_port=$((19000 + $$ % 1000))   # below the ephemeral ports (32768 and up), apart from the other tests' bands
mkdir -p "$dir"/{spool,state,log,run}
started_munge=0
# Stops a daemon by its pid file: SIGTERM, up to 10 s, then SIGKILL.
stop_daemon() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  stop_daemon "$dir/run/slurmd.pid"
  stop_daemon "$dir/run/slurmctld.pid"
  if [ "$started_munge" = 1 ]; then pkill -x munged 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

cpus=$(nproc)
cat > "$dir/slurm.conf" <<CONF
ClusterName=dsrt-test
SlurmctldHost=localhost
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
NodeName=localhost CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$dir/slurm.conf
model=$dir/tiny-llama
"$build/apps/dsgen/dsgen" --preset tiny-llama --seed 1 --threads 1 --out "$model" >/dev/null

# slurmd registers once, at start: munge must answer first. A munged of the system is
# used as it is; otherwise one is started (again, if one that was stopping held its lock).
mkdir -p /run/munge && chown munge:munge /run/munge
for _ in $(seq 100); do
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged 2>/dev/null || true
    started_munge=1
  fi
  sleep 0.1
done
munge -n | unmunge >/dev/null || { echo "FAIL: munged does not answer"; exit 1; }
PATH=$PATH:/usr/sbin
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 0.2
done
sinfo -h -o %t | grep -q idle || { cat "$dir"/log/*.log; echo "FAIL: slurmd did not become idle"; exit 1; }

out=$(timeout 300 salloc -n 2 "$build/apps/dsrun/dsrun" --slurm --model "$model" --port "$dsrt_port" \
        --run-dir "$dir/cluster" --threads 1 --prompt "hello" --max-tokens 4 2>&1) || {
  echo "$out"; cat "$dir"/cluster/node-*.log 2>/dev/null; echo "FAIL: dsrun --slurm failed"; exit 1; }
echo "$out"
grep -q "cluster ready: 2 nodes" <<<"$out" || { echo "FAIL: no ready line"; exit 1; }
grep -q "4 generated" <<<"$out" || { echo "FAIL: no answer"; exit 1; }
# Both nodes ran as Slurm steps of the allocation.
grep -q "dsnode head" "$dir/cluster/node-0.log" && grep -q "dsnode worker 1" "$dir/cluster/node-1.log" \
  || { echo "FAIL: node logs"; exit 1; }
echo "PASS: dsrun --slurm answered through a 2-task cluster"
