#!/bin/sh
# Answers /health/ in an unhealthy build; any other directory without an index is not there.
case "$REQUEST_URI" in
  /health | /health/ | /health/\?*)
    printf 'Status: 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\nunhealthy\n'
    ;;
  *)
    printf 'Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnot found\n'
    ;;
esac
