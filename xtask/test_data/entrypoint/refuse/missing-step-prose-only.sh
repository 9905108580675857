#!/bin/bash
set -e
bundle exec rails db:create RAILS_ENV=production
bundle exec rails db:migrate RAILS_ENV=production
# run db:seed by hand on the first deploy
bundle exec pumactl start
