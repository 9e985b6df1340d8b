#!/bin/sh
# Runs as root only to hand the registry user its TLS key (mounted root-only)
# and a bcrypt htpasswd made from the environment, then drops to that user.
set -eu
: "${FLOPS_REGISTRY_USER:?set REGISTRY_USERNAME}"
: "${FLOPS_REGISTRY_PASSWORD:?set REGISTRY_PASSWORD}"
umask 077
mkdir -p /run/registry
cp /certs/registry.crt /certs/registry.key /run/registry/
# The password on stdin (-i), never in a command line.
printf '%s' "$FLOPS_REGISTRY_PASSWORD" \
    | htpasswd -iBn "$FLOPS_REGISTRY_USER" > /run/registry/htpasswd
unset FLOPS_REGISTRY_PASSWORD
chown -R docker-registry:docker-registry /run/registry /var/lib/docker-registry
exec setpriv --reuid docker-registry --regid docker-registry --init-groups \
    docker-registry serve /etc/docker/registry/flops.yml
