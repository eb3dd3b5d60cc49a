"""The Python twin of ../lua/sql.lua: SQL that reaches outside the policy's own database,
refused when the host confines Python's SQL (--confine-python-sql). login_info is
"WHAT TARGET"; every refused form raises, so the decision is an error naming it."""
import authhost

ATTACKS = {
    "attach": lambda target: authhost.db.exec("ATTACH DATABASE ? AS other", [target]),
    "attach_literal": lambda target: authhost.db.exec(f"ATTACH DATABASE '{target}' AS other"),
    "vacuum_into": lambda target: authhost.db.exec(f"VACUUM INTO '{target}'"),
    "vacuum": lambda target: authhost.db.exec("VACUUM"),
    "load_extension": lambda target: authhost.db.query("SELECT load_extension(?)", [target]),
    "journal_mode": lambda target: authhost.db.query("PRAGMA journal_mode = DELETE"),
    "writable_schema": lambda target: authhost.db.exec("PRAGMA writable_schema = ON"),
    "database_list": lambda target: authhost.db.query("PRAGMA database_list"),
    "user_version_write": lambda target: authhost.db.exec("PRAGMA user_version = 7"),
}


def setup():
    authhost.db.exec("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)")


def on_user_login(login_info, node_info):
    what, _, target = login_info.partition(" ")
    if what == "allowed":
        # What a policy needs keeps working: reads, writes, read-only schema pragmas.
        authhost.db.exec("INSERT INTO notes(body) VALUES (?)", ["hello"])
        rows = authhost.db.query("SELECT count(*) AS n FROM notes")
        columns = authhost.db.query("PRAGMA table_info(notes)")
        version = authhost.db.query("PRAGMA user_version")
        if rows[0]["n"] >= 1 and len(columns) == 2 and version[0]["user_version"] == 0:
            return 1
        return 2
    ATTACKS[what](target)
    return 3
