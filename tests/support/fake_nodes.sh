#!/bin/sh
# Gives each rank of a one-machine job the node identity of a cluster (tests only):
#   TESSERA_TEST_NODES="nodeA nodeA nodeB nodeB" fake_nodes.sh tessera-train ...
# rank r (Open MPI's or Slurm's) runs with TESSERA_HOSTNAME set to the r-th name. A name listed in
# TESSERA_EXCLUDED_HOSTS (set by tessera-launch --exclude-failed-hosts) is replaced by
# $TESSERA_TEST_SPARE, as a scheduler gives a job a spare node for a failed one.
rank=${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-0}}
host=$(echo "$TESSERA_TEST_NODES" | tr -s ' ' '\n' | sed -n "$((rank + 1))p")
for excluded in $(echo "${TESSERA_EXCLUDED_HOSTS:-}" | tr ',' ' '); do
  [ "$host" = "$excluded" ] && host=${TESSERA_TEST_SPARE:?TESSERA_TEST_SPARE names the spare node}
done
TESSERA_HOSTNAME=${host:?TESSERA_TEST_NODES names no node for rank $rank}
export TESSERA_HOSTNAME
exec "$@"
