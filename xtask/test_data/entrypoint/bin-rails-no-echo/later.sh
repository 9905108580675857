#!/bin/sh
set -e
rm -f tmp/pids/server.pid
# bin/rails db:create
bin/rails db:migrate
# ./bin/rails db:seed
exec bin/rails server
