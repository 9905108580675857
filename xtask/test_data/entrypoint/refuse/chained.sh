#!/bin/bash
set -e
rails db:create && rails db:migrate
bundle exec rails db:seed RAILS_ENV=production
