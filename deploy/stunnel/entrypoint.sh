#!/bin/sh
# Writes stunnel's configuration from the environment and runs it in the foreground.
#   REDIS_TLS_CONNECT      host:port of the TLS Redis (required)
#   REDIS_TLS_ACCEPT       where Engram connects in plain text (default 127.0.0.1:6379;
#                          0.0.0.0:6379 only on a private network, e.g. compose)
#   REDIS_TLS_CA_FILE      CA bundle that signed the server certificate
#                          (default: the system bundle)
#   REDIS_TLS_SERVER_NAME  name checked in the certificate and sent as SNI
#                          (default: the host of REDIS_TLS_CONNECT)
#   REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE   client certificate, when Redis
#                          requires one (tls-auth-clients yes)
set -eu
: "${REDIS_TLS_CONNECT:?set REDIS_TLS_CONNECT to the TLS Redis host:port}"
host="${REDIS_TLS_CONNECT%:*}"
name="${REDIS_TLS_SERVER_NAME:-$host}"
conf="${TMPDIR:-/tmp}/engram-redis-tls.conf"
{
  echo "foreground = yes"
  echo "pid ="
  echo "syslog = no"
  echo "[redis]"
  echo "client = yes"
  echo "accept = ${REDIS_TLS_ACCEPT:-127.0.0.1:6379}"
  echo "connect = ${REDIS_TLS_CONNECT}"
  echo "verifyChain = yes"
  echo "CAfile = ${REDIS_TLS_CA_FILE:-/etc/ssl/certs/ca-certificates.crt}"
  echo "checkHost = ${name}"
  echo "sni = ${name}"
  if [ -n "${REDIS_TLS_CERT_FILE:-}" ]; then
    echo "cert = ${REDIS_TLS_CERT_FILE}"
    echo "key = ${REDIS_TLS_KEY_FILE:?REDIS_TLS_KEY_FILE goes with REDIS_TLS_CERT_FILE}"
  fi
} > "$conf"
if command -v stunnel >/dev/null 2>&1; then exec stunnel "$conf"; fi
exec stunnel4 "$conf"
