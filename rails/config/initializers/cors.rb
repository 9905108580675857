# The Next.js frontend calls this API from another origin; CORS_ORIGINS lists it
# (comma separated), e.g. "https://zenn-clone.example.com".
Rails.application.config.middleware.insert_before 0, Rack::Cors do
  allow do
    origins(*ENV.fetch("CORS_ORIGINS", "http://localhost:3000").split(","))

    resource "*",
             headers: :any,
             methods: [:get, :post, :put, :patch, :delete, :options, :head]
  end
end
