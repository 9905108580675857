require "fileutils"

max_threads_count = ENV.fetch("RAILS_MAX_THREADS") { 5 }
min_threads_count = ENV.fetch("RAILS_MIN_THREADS") { max_threads_count }
threads min_threads_count, max_threads_count

rails_env = ENV.fetch("RAILS_ENV") { "development" }
environment rails_env

app_root = File.expand_path("..", __dir__)
pidfile ENV.fetch("PIDFILE") { File.join(app_root, "tmp/pids/server.pid") }

if rails_env == "production"
  # nginx (another container, sharing /myapp/tmp through volumesFrom) is the only client:
  # no TCP port, and a socket every user may connect to, since nginx's workers are not root.
  socket_path = File.join(app_root, "tmp/sockets/puma.sock")
  FileUtils.mkdir_p(File.dirname(socket_path))
  bind "unix://#{socket_path}?umask=0000"
else
  worker_timeout 3600 if rails_env == "development"
  port ENV.fetch("PORT") { 3000 }
end

plugin :tmp_restart
