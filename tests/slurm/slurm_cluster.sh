#!/bin/sh
# A one-node Slurm cluster for the tests, run as root from a directory of its own:
#   slurm_cluster.sh start DIR    munged, slurmctld and slurmd with DIR/slurm.conf (SLURM_CONF=DIR/slurm.conf)
#   slurm_cluster.sh stop DIR     cancels every job, stops the three daemons, removes their state
# Debian's slurm-wlm and munge (installed by .ci/run). proctrack/linuxproc and task/none: no cgroups
# are needed, so it runs in a container. Without the packages, or when a daemon does not come up,
# it prints a line with TESSERA-SKIP and exits 0: the Slurm tests then report themselves skipped.
set -u
action=$1 dir=$2
skip() { echo "TESSERA-SKIP: $*"; exit 0; }

stop() {
  [ -f "$dir/slurm.conf" ] || return 0
  SLURM_CONF="$dir/slurm.conf" scancel --full --quiet --user="$(id -un)" 2>/dev/null
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
  done
  sleep 1
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null
  done
  rm -rf "$dir/state" "$dir/spool" "$dir/slurm.conf" "$dir/munge"
}

if [ "$action" = stop ]; then
  stop
  exit 0
fi

for program in munged slurmctld slurmd srun sbatch sinfo; do
  command -v "$program" >/dev/null 2>&1 || skip "no Slurm here ($program not found: apt-get install slurm-wlm munge)"
done
[ "$(id -u)" = 0 ] || skip "the test cluster runs its daemons as root"
stop
mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
chmod 700 "$dir/munge"
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 2>/dev/null
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/socket" --log-file="$dir/log/munged.log" \
  --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/seed" || skip "munged did not start (see $dir/log/munged.log)"

# cred_expire (Slurm's default 120 s) also holds a requeued job back that long: the tests requeue.
# Ports from the directory's name, so that two build trees on one machine do not collide.
base=$((17000 + $(echo "$dir" | cksum | cut -d' ' -f1) % 900 * 2))
node=$(hostname -s)
cat > "$dir/slurm.conf" <<CONF
ClusterName=tessera-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$base
SlurmdPort=$((base + 1))
AuthType=auth/munge
AuthInfo=socket=$dir/munge/socket,cred_expire=10
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF" || skip "slurmctld did not start (see $dir/log/slurmctld.log)"
slurmd -f "$SLURM_CONF" || skip "slurmd did not start (see $dir/log/slurmd.log)"
for i in $(seq 60); do
  if sinfo --noheader --states=idle --format=%N 2>/dev/null | grep -q .; then
    echo "slurm: a one-node cluster ($node) is up: SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
state=$(sinfo --noheader --format='%T %E' 2>&1)
stop
skip "the Slurm node did not become idle in 30 s ($state); see $dir/log"
