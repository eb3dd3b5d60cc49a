# Database errors as a policy meets them. on_user_login's login_info says which.
import threading

from authhost import db


def on_user_login(login_info, node_info):
    if login_info == "missing-table":
        db.query("SELECT * FROM no_such_table WHERE name = ?", (node_info,))
    elif login_info == "caught":
        try:
            db.query("SELECT * FROM no_such_table")
        except db.Error as e:
            return 7 if "no such table: no_such_table" in str(e) else -3
    elif login_info == "other-thread":
        # authhost.db belongs to the thread running the callback.
        seen = []

        def use_db():
            try:
                db.query("SELECT 1")
                seen.append("no error")
            except db.Error as e:
                seen.append(str(e))

        thread = threading.Thread(target=use_db)
        thread.start()
        thread.join()
        return 8 if "no database here" in seen[0] else -3
    elif login_info == "slow":
        # Runs past the deadline; `except Exception` cannot keep it going.
        endless = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                   "SELECT count(*) AS c FROM n")
        try:
            db.query(endless)
        except Exception:
            return 9
    return 1
