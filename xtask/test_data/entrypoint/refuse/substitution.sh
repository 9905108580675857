#!/bin/bash
set -e
bundle exec rails db:create
echo "$(bundle exec rails db:seed)"
