#!/bin/sh
# Gives each rank of a one-machine job the node identity of a cluster (tests only):
#   TESSERA_TEST_NODES="nodeA nodeA nodeB nodeB" TESSERA_TEST_SPARES="nodeC nodeD" fake_nodes.sh tessera-train ...
# rank r (Open MPI's or Slurm's) runs with TESSERA_HOSTNAME set to the r-th name. A name listed in
# TESSERA_EXCLUDED_HOSTS (set by tessera-launch --exclude-failed-hosts, comma-separated and sorted)
# is replaced by the spare at the same position, as a scheduler gives a job a spare node for a
# failed one; a spare that was excluded in turn is replaced likewise.
rank=${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-0}}
host=$(echo "$TESSERA_TEST_NODES" | tr -s ' ' '\n' | sed -n "$((rank + 1))p")
excluded=$(echo "${TESSERA_EXCLUDED_HOSTS:-}" | tr ',' '\n')
while index=$(echo "$excluded" | grep -n -x -F "$host" | cut -d: -f1) && [ -n "$index" ]; do
  host=$(echo "${TESSERA_TEST_SPARES:-}" | tr -s ' ' '\n' | sed -n "${index}p")
  [ -n "$host" ] || { echo "fake_nodes.sh: no spare left for rank $rank" >&2; exit 1; }
done
TESSERA_HOSTNAME=${host:?TESSERA_TEST_NODES names no node for rank $rank}
export TESSERA_HOSTNAME
exec "$@"
