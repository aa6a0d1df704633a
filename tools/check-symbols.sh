#!/bin/sh
# Fails when a library exports a symbol without the sn_ prefix.
# nm -g --defined-only lists exported definitions; sanitizer and compiler
# helper symbols are not ours.
status=0
for lib in "$@"; do
  bad=$(nm -g --defined-only "$lib" 2>/dev/null | awk 'NF==3 {print $3}' \
        | grep -v '^sn_' | grep -v '^__' | grep -v '^_GLOBAL_' || true)
  if [ -n "$bad" ]; then
    echo "check-symbols: $lib exports symbols without the sn_ prefix:" >&2
    echo "$bad" | sed 's/^/  /' >&2
    status=1
  fi
done
exit $status
