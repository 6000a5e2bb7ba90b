#!/bin/sh
# Toy server for the st-shellform / st-execform images. On SIGTERM it drains and exits 0;
# otherwise it idles. `sleep & wait` (not a plain `sleep`) lets the trap run at once:
# the shell runs traps only between commands, and `wait` returns early on a trapped signal.
trap 'echo draining; sleep 0.2; exit 0' TERM
echo "ready pid $$"
while :; do
  sleep 1 &
  wait
done
