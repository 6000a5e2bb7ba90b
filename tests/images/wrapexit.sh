#!/bin/sh
# PID 1 for the "wrapper exits first" story (npm/yarn/`sh -c` wrappers): it handles TERM by
# exiting at once, without passing it on. server.sh, which drains on TERM, never gets it and
# is SIGKILLed by the namespace teardown; the container still exits 0.
trap 'echo "wrapper: got TERM, exiting"; exit 0' TERM
/bin/server.sh &
while :; do
  wait
done
