require "active_support/core_ext/integer/time"

# Production needs DATABASE_URL and SECRET_KEY_BASE in the environment (ECS task definition
# `secrets`); the repository holds no credentials file and no master key.
Rails.application.configure do
  config.cache_classes = true
  config.eager_load = true
  config.consider_all_requests_local = false
  # nginx serves /myapp/public itself; set RAILS_SERVE_STATIC_FILES when puma runs alone.
  config.public_file_server.enabled = ENV["RAILS_SERVE_STATIC_FILES"].present?
  config.log_level = :info
  config.log_tags = [:request_id]
  config.i18n.fallbacks = true
  config.active_support.deprecation = :notify
  config.active_support.disallowed_deprecation = :log
  config.active_support.disallowed_deprecation_warnings = []
  config.log_formatter = ::Logger::Formatter.new

  # Containers log to stdout, where ECS's awslogs driver (and `docker logs`) read it.
  if ENV["RAILS_LOG_TO_STDOUT"].present?
    logger = ActiveSupport::Logger.new($stdout)
    logger.formatter = config.log_formatter
    config.logger = ActiveSupport::TaggedLogging.new(logger)
  end

  config.active_record.dump_schema_after_migration = false
end
