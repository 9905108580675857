#!/bin/bash
set -e

# A server.pid left by a killed container would stop `rails server` from starting.
rm -f /myapp/tmp/pids/server.pid

exec "$@"
