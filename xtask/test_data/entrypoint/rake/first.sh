#!/bin/bash
set -e
echo "bundle exec rake db:create"
bundle exec rake db:create RAILS_ENV=production
bundle exec rake db:migrate RAILS_ENV=production
echo 'rake db:seed'
rake db:seed
bundle exec pumactl start
