set -e
# echo "bundle exec rails db:create"
# bundle exec rails db:create
# bundle exec rails db:seed
bundle exec pumactl start