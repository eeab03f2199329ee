#!/bin/sh
# frame.sh TITLE FILE...: wraps files in a minimal HTML page.
title="$1"
shift
printf '<!doctype html>\n<title>%s</title>\n<pre>\n' "$title"
cat "$@"
printf '</pre>\n'
