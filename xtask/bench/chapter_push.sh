#!/usr/bin/env bash
# The chapter's step 2 as a person types it, one command after another: build both images
# with --no-cache, log in to ECR, tag, push both. The baseline `cargo xtask` is measured against.
#
# Usage: xtask/bench/chapter_push.sh REGISTRY
#   REGISTRY   host[:port] to push to: <account>.dkr.ecr.<region>.amazonaws.com, or the sandbox's
# Environment (defaults are the chapter's):
#   AWS_REGION (ap-northeast-1), AWS_ENDPOINT_URL (the sandbox's moto), AWS_PROFILE
#   RAILS_DOCKERFILE (./rails/Dockerfile.prod) RAILS_CONTEXT (./rails) RAILS_REPO (zenn-clone-rails)
#   NGINX_DOCKERFILE (./nginx/Dockerfile.prod) NGINX_CONTEXT (./nginx) NGINX_REPO (zenn-clone-nginx)
#   RAILS_BUILD_ARGS, NGINX_BUILD_ARGS: extra `docker build` words, e.g. "--build-arg RUBY_IMAGE=zenn-sandbox/ruby:3.1"
# Prints `chapter_push wall_s=<seconds>` last. Run from the repository root.
set -euo pipefail

registry=${1:?usage: $0 REGISTRY (host[:port] of the registry to push to)}
region=${AWS_REGION:-ap-northeast-1}
rails_repo=${RAILS_REPO:-zenn-clone-rails}
nginx_repo=${NGINX_REPO:-zenn-clone-nginx}

# The login goes to a private config, as the xtask does, so ~/.docker/config.json stays untouched.
DOCKER_CONFIG=$(mktemp -d)
export DOCKER_CONFIG
trap 'rm -rf "$DOCKER_CONFIG"' EXIT

endpoint=()
if [[ -n ${AWS_ENDPOINT_URL:-} ]]; then
    endpoint=(--endpoint-url "$AWS_ENDPOINT_URL")
fi

start=$(date +%s.%N)

# shellcheck disable=SC2086 # the *_BUILD_ARGS are word lists on purpose
docker build -t "$rails_repo" -f "${RAILS_DOCKERFILE:-./rails/Dockerfile.prod}" "${RAILS_CONTEXT:-./rails}" --no-cache ${RAILS_BUILD_ARGS:-}
# shellcheck disable=SC2086
docker build -t "$nginx_repo" -f "${NGINX_DOCKERFILE:-./nginx/Dockerfile.prod}" "${NGINX_CONTEXT:-./nginx}" --no-cache ${NGINX_BUILD_ARGS:-}

aws ecr get-login-password --region "$region" "${endpoint[@]}" |
    docker login --username AWS --password-stdin "$registry"

docker tag "$rails_repo:latest" "$registry/$rails_repo:latest"
docker tag "$nginx_repo:latest" "$registry/$nginx_repo:latest"

docker push "$registry/$rails_repo:latest"
docker push "$registry/$nginx_repo:latest"

end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "chapter_push wall_s=%.2f\n", e - s }'
