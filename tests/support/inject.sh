#!/bin/sh
# Runs a command and injects a failure into one of its ranks from outside, as a test or a benchmark
# needs (tests only; the ranks' heartbeats say where each rank is and its pid):
#
#   inject.sh FAILDIR ATTEMPT RANK STEP ACTION -- COMMAND...
#
# waits until rank RANK's heartbeat in FAILDIR (of launch ATTEMPT) reports step >= STEP (or, with
# INJECT_LOG set to the trainer's --log, until that log's ATTEMPT-th attempt logs step STEP: exact,
# where heartbeats come once a second), then:
#   freeze              SIGSTOP the rank (it never runs again: mpirun's teardown kills it)
#   slow:STOP_MS:PERIOD_MS[:UNTIL]   SIGSTOP it for STOP_MS of every PERIOD_MS until it reaches
#                       step UNTIL (or exits; by INJECT_LOG's steps too when set)
#   signal:SIG[:SIG2[:GAP]]   send SIG (and SIG2 GAP seconds later, default 0.05) to COMMAND itself
# The time of the injection (seconds since the epoch) is appended to FAILDIR/injected.txt. Exits
# with COMMAND's exit code; COMMAND's output passes through.
set -u
faildir=$1 attempt=$2 rank=$3 step=$4 action=$5
shift 5
[ "$1" = "--" ] && shift
"$@" &
job=$!

field() {  # field NAME FILE: a number from a one-line JSON heartbeat
  sed -n "s/.*\"$1\":\([-0-9.]*\).*/\1/p" "$2" 2>/dev/null
}

reached() {  # reached STEP: whether the attempt has reached the step
  if [ -n "${INJECT_LOG:-}" ]; then
    [ -f "$INJECT_LOG" ] || return 1
    awk -v attempt="$attempt" -v step="$1" '
      /"kind":"resume"/ { resumes++ }
      /"kind":"train"/ && resumes == attempt { s = $0; sub(/.*"step":/, "", s); sub(/[,}].*/, "", s); if (s + 0 >= step) found = 1 }
      END { exit found ? 0 : 1 }' "$INJECT_LOG"
  else
    [ "$(field step "$beat")" -ge "$1" ] 2>/dev/null
  fi
}

beat="$faildir/heartbeat-rank-$rank.json"
while kill -0 "$job" 2>/dev/null; do
  if [ -f "$beat" ] && [ "$(field attempt "$beat")" = "$attempt" ] && reached "$step" &&
     [ "$(sed -n 's/.*"exited":\([a-z]*\).*/\1/p' "$beat")" = "false" ]; then
    pid=$(field pid "$beat")
    date +%s.%N >> "$faildir/injected.txt"
    case "$action" in
      freeze) kill -STOP "$pid" ;;
      slow:*)
        stop_ms=$(echo "$action" | cut -d: -f2) period_ms=$(echo "$action" | cut -d: -f3)
        until=$(echo "$action" | cut -d: -f4)
        run_s=$(awk "BEGIN { print ($period_ms - $stop_ms) / 1000 }") stop_s=$(awk "BEGIN { print $stop_ms / 1000 }")
        # The step check runs while the rank is stopped, so that on a loaded machine the time it
        # takes does not lengthen the rank's running share.
        while kill -STOP "$pid" 2>/dev/null; do
          if [ -n "$until" ] && reached "$until"; then
            kill -CONT "$pid" 2>/dev/null
            date +%s.%N >> "$faildir/injected.txt"
            break
          fi
          sleep "$stop_s"
          kill -CONT "$pid" 2>/dev/null || break
          sleep "$run_s"
        done ;;
      signal:*)
        kill -"$(echo "$action" | cut -d: -f2)" "$job"
        second=$(echo "$action" | cut -d: -f3) gap=$(echo "$action" | cut -d: -f4)
        [ -n "$second" ] && sleep "${gap:-0.05}" && kill -"$second" "$job" ;;
    esac
    break
  fi
  sleep 0.02
done
wait "$job"
