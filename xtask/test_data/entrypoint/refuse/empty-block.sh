#!/bin/bash
set -e
if [ "$FIRST_DEPLOY" = "1" ]; then
  bundle exec rails db:create RAILS_ENV=production
  bundle exec rails db:seed RAILS_ENV=production
fi
bundle exec pumactl start
