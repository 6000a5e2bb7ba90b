#!/bin/sh
# The middle of the two-level wrapper: no TERM handler, not PID 1 (see outer.sh).
/bin/server.sh
echo "middle: server ended"
