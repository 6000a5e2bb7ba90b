#!/bin/sh
# PID 1 as dumb-init does it: the app runs in a session (and process group) of its own, and
# TERM goes to that whole group with kill(-pgid), then PID 1 waits for the app.
trap 'kill -TERM -"$child"; wait "$child"; exit 0' TERM
setsid /bin/server.sh &
child=$!
while :; do
  wait
done
