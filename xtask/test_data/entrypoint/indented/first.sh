#!/bin/bash
set -e

if [ "${SKIP_DB:-}" != "1" ]; then
  echo "preparing the database"
  echo "bundle exec rails db:create RAILS_ENV=production"
  bundle exec rails db:create RAILS_ENV=production
	bundle exec rails db:migrate RAILS_ENV=production
	echo "bundle exec rails db:seed RAILS_ENV=production"
	bundle exec rails db:seed RAILS_ENV=production
fi

bundle exec pumactl start
