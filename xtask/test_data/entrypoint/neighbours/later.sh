#!/bin/bash
set -e
# db:create and db:seed run on the first deploy only: `cargo xtask deploy` comments them out.
# Never run bundle exec rails db:seed twice: seeds.rb uses create!, a second run raises.
# bundle exec rails db:seed only once, see above
echo "Start entrypoint.prod.sh"
echo "Creating the database"
# bundle exec rails db:create RAILS_ENV=production
# echo "bundle exec rails db:seed RAILS_ENV=production"
# bundle exec rails db:seed RAILS_ENV=production >> log/seed.log 2>&1 # seeds once
bundle exec rails db:migrate RAILS_ENV=production
bundle exec rails db:create_something RAILS_ENV=production
bundle exec rails db:seed:replant RAILS_ENV=production
echo "db:seed done" # a note about db:seed
bundle exec pumactl start # db:seed ran above
