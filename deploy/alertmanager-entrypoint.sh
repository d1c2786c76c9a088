#!/bin/sh
# Renders deploy/alertmanager.yml for the compose stack, then runs Alertmanager (docker-compose.yml).
#
# Alertmanager expands no environment variables in its configuration, so the one value the
# operator sets -- where the default receiver's webhook goes -- is put in here: the shipped file's
# placeholder address becomes OPENCLAW_ALERT_WEBHOOK_URL. Unset, the placeholder stays, and
# notifications fail visibly (alertmanager_notifications_failed_total) instead of going nowhere.
set -eu
PLACEHOLDER="http://openclaw-alert-webhook.invalid/alerts"
# (the paths and the binary are the container's; the end-to-end test runs this same script
# with Debian's alertmanager: tests/e2e/test_alert_delivery.py)
SOURCE="${ALERTMANAGER_CONFIG_SOURCE:-/etc/alertmanager/alertmanager.yml}"
RENDERED="${ALERTMANAGER_CONFIG_RENDERED:-/tmp/alertmanager.yml}"
URL="${OPENCLAW_ALERT_WEBHOOK_URL:-$PLACEHOLDER}"
case "$URL" in
  http://*|https://*) ;;
  *) echo "OPENCLAW_ALERT_WEBHOOK_URL must be an http(s) URL" >&2; exit 2 ;;
esac
# the characters sed would read in a replacement (& \ and the | delimiter) are escaped
ESCAPED=$(printf '%s' "$URL" | sed 's/[&|\\]/\\&/g')
sed "s|$PLACEHOLDER|$ESCAPED|" "$SOURCE" > "$RENDERED"
exec "${ALERTMANAGER_BIN:-/bin/alertmanager}" --config.file="$RENDERED" "$@"
