#!/bin/bash
set -e
echo "bundle exec rails db:create RAILS_ENV=production"
bundle exec rails db:create RAILS_ENV=production
echo "bundle exec rails db:schema:load RAILS_ENV=production"
bundle exec rails db:schema:load RAILS_ENV=production
bundle exec rails db:migrate RAILS_ENV=production
bundle exec rails db:seed RAILS_ENV=production
bin/rails admin:create ADMIN_EMAIL=admin@example.com
bundle exec pumactl start
