#!/bin/sh
# PID 1 for st-slowstop: its TERM handler drains for 10 s, longer than the grace period the
# tests give `docker stop`, so the runtime's SIGKILL ends it mid-drain.
trap 'echo draining slowly; sleep 10; exit 0' TERM
echo "ready pid $$"
while :; do
  sleep 1 &
  wait
done
