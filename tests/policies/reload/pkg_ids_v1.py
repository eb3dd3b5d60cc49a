# Module `ids.values`, version 1 (installed as ids/values.py).
USER_ID = 404
