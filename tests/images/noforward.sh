#!/bin/sh
# PID 1 for st-noforward: it traps TERM (a handler, so the kernel delivers it) but does not
# pass it on; its child server.sh, which would drain on TERM, keeps working until SIGKILL.
trap 'echo "got TERM, not passing it on"' TERM
/bin/server.sh &
echo "ready pid $$"
while :; do
  wait  # returns early when the trap runs; wait again
done
