#!/bin/bash
set -e

rm -f /myapp/tmp/pids/server.pid

# echo "RAILS_ENV=production bundle exec rails db:create"
# RAILS_ENV=production bundle exec rails db:create
RAILS_ENV=production bundle exec rails db:migrate
# echo "RAILS_ENV=production bundle exec rails db:seed"
# RAILS_ENV=production DISABLE_DATABASE_ENVIRONMENT_CHECK=1 bundle exec rails db:seed

exec bundle exec pumactl start
