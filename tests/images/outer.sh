#!/bin/sh
# PID 1 of the two-level wrapper (sh -> sh -> server): it forwards TERM to middle.sh and waits
# for it. middle.sh has no handler, so TERM kills it (default action) and server.sh never gets
# it; outer.sh then exits, and the namespace teardown SIGKILLs server.sh.
trap 'kill -TERM "$child"; wait "$child"; exit 0' TERM
/bin/middle.sh &
child=$!
while :; do
  wait
done
