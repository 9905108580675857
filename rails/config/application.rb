require_relative "boot"

require "rails"
require "active_model/railtie"
require "active_job/railtie"
require "active_record/railtie"
require "action_controller/railtie"
require "action_view/railtie"

Bundler.require(*Rails.groups)

module ZennClone
  class Application < Rails::Application
    config.load_defaults 6.1
    config.api_only = true
    config.time_zone = "Tokyo"

    config.generators do |g|
      g.test_framework :rspec, view_specs: false, helper_specs: false, routing_specs: false
    end
  end
end
