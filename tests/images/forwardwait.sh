#!/bin/sh
# PID 1 that does it right: on TERM it passes TERM to server.sh and waits for it to drain.
trap 'kill -TERM "$child"; wait "$child"; exit 0' TERM
/bin/server.sh &
child=$!
while :; do
  wait
done
