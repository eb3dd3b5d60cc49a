# Helper module, version 1. Both versions have the same size on purpose: a stale cached
# bytecode file (checked by mtime seconds and size) must not hide the change.
USER_ID = 404
