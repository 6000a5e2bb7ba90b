#!/bin/sh
# PID 1 for st-sigign: `trap '' TERM` sets SIG_IGN, so the kernel discards SIGTERM at once
# (outcome ignored, reason sig_ign) and `docker stop` ends in SIGKILL after the grace period.
trap '' TERM
echo "ready pid $$"
while :; do
  sleep 1
done
