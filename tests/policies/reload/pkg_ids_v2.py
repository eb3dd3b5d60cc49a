# Module `ids.values`, version 2 (installed as ids/values.py).
USER_ID = 505
