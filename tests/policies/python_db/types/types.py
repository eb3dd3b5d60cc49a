# SQL values and Python values map both ways as contract §5 says; any mismatch raises an
# AssertionError that names it. on_new_node answers "primary" when every check passes.
import collections.abc

import authhost
from authhost import db
from authhost.db import Error


def check(what, got, expected):
    if type(got) is not type(expected) or got != expected:
        raise AssertionError(f"{what}: expected {expected!r} ({type(expected).__name__}), "
                             f"got {got!r} ({type(got).__name__})")


def raises(what, exception, needle, function, *args):
    try:
        function(*args)
    except exception as e:
        if needle not in str(e):
            raise AssertionError(f"{what}: {type(e).__name__} without {needle!r}: {e}")
        return
    raise AssertionError(f"{what}: nothing raised")


class Pair(collections.abc.Sequence):
    """A sequence that is neither a list nor a tuple."""

    def __getitem__(self, index):
        return ("seq", 2)[index]

    def __len__(self):
        return 2


def on_new_node(node_info):
    db.exec("CREATE TABLE IF NOT EXISTS v (n, i, r, t, b, flag, off)")
    db.exec("DELETE FROM v")
    changed = db.exec("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (None, 42, 1.5, "tëxt ✓", b"\x00\xff\x01", True, False))
    check("changes", changed, 1)
    check("last_insert_id", db.last_insert_id(), 1)
    rows = db.query("SELECT n, i, r, t, b, flag, off, typeof(n) AS nt, typeof(i) AS it, "
                    "typeof(r) AS rt, typeof(t) AS tt, typeof(b) AS bt, typeof(flag) AS ft FROM v")
    check("row count", len(rows), 1)
    row = rows[0]
    check("rows are dicts", type(row), dict)
    check("NULL", row["n"], None)
    check("INTEGER", row["i"], 42)
    check("REAL", row["r"], 1.5)
    check("TEXT", row["t"], "tëxt ✓")
    check("BLOB", row["b"], b"\x00\xff\x01")
    check("True", row["flag"], 1)
    check("False", row["off"], 0)
    for column, sql_type in [("nt", "null"), ("it", "integer"), ("rt", "real"), ("tt", "text"),
                             ("bt", "blob"), ("ft", "integer")]:
        check(f"typeof {column}", row[column], sql_type)

    # Other bytes-like values bind as BLOB; the edges of each type survive the round trip.
    edges = [-2**63, 2**63 - 1, 0.0, -1e308, "", b"", bytearray(b"\x01\x02"), memoryview(b"mv")]
    for value in edges:
        got = db.query("SELECT ? AS x", [value])[0]["x"]
        expected = bytes(value) if isinstance(value, (bytearray, memoryview)) else value
        check(f"round trip of {value!r}", got, expected)
    check("blob type", db.query("SELECT typeof(?) AS t", [bytearray(b"x")])[0]["t"], "blob")

    # Any sequence of parameters; none at all as an omitted argument, None or ().
    check("tuple", db.query("SELECT ? AS a, ? AS b", ("tu", 1)), [{"a": "tu", "b": 1}])
    check("list", db.query("SELECT ? AS a, ? AS b", ["li", 1]), [{"a": "li", "b": 1}])
    check("sequence", db.query("SELECT ? AS a, ? AS b", Pair()), [{"a": "seq", "b": 2}])
    check("range", db.query("SELECT ? AS a, ? AS b", range(5, 7)), [{"a": 5, "b": 6}])
    for no_params in [(), [], None]:
        check(f"params {no_params!r}", db.query("SELECT 7 AS x", no_params), [{"x": 7}])
    check("no params", db.query("SELECT 7 AS x"), [{"x": 7}])
    check("no rows", db.query("SELECT * FROM v WHERE i = ?", (-1,)), [])

    # Refusals name the parameter's position and type.
    raises("dict param", TypeError, "params[1] is of type dict", db.query, "SELECT ?, ?", (1, {}))
    raises("object param", TypeError, "params[0] is of type object", db.exec, "SELECT ?", [object()])
    raises("big int", OverflowError, "params[2] is an int outside", db.query,
           "SELECT ?, ?, ?", (1, 2, 2**63))
    raises("str as params", TypeError, "write (value,)", db.query, "SELECT ?", "alice")
    raises("dict as params", TypeError, "params must be a sequence", db.query, "SELECT ?", {"a": 1})
    raises("sql not str", TypeError, "the SQL must be a str", db.query, b"SELECT 1")
    raises("too few params", Error, "takes 2 parameter(s), 1 given", db.query, "SELECT ?, ?", (1,))
    raises("sql error", Error, "no such table: nowhere", db.query, "SELECT * FROM nowhere")
    raises("syntax error", Error, "syntax error", db.exec, "SELEC 1")
    raises("malformed hash", ValueError, "malformed password hash", authhost.verify_password,
           "$2b$10$oops", "pw")
    raises("hash of an int", TypeError, "must be a str or bytes", authhost.hash_password, 7)
    if not issubclass(Error, Exception) or Error.__module__ != "authhost.db":
        raise AssertionError(f"authhost.db.Error is {Error!r}")

    # Nested transactions are savepoints: the inner failure undoes only the inner insert.
    db.exec("DELETE FROM v")
    with db.transaction():
        db.exec("INSERT INTO v (i) VALUES (1)")
        try:
            with db.transaction():
                db.exec("INSERT INTO v (i) VALUES (2)")
                raise KeyError("inner")
        except KeyError:
            pass
    check("savepoints", db.query("SELECT group_concat(i) AS ids FROM v")[0]["ids"], "1")
    # A transaction object is for one `with` block.
    tx = db.transaction()
    with tx:
        db.exec("INSERT INTO v (i) VALUES (3)")
    raises("reused transaction", Error, "already used", tx.__enter__)
    check("committed", db.query("SELECT count(*) AS c FROM v")[0]["c"], 2)

    # Passwords: str and bytes alike.
    hashed = authhost.hash_password("pässword")
    check("hash form", hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), True)
    check("verify str", authhost.verify_password(hashed, "pässword"), True)
    check("verify bytes", authhost.verify_password(hashed, "pässword".encode()), True)
    check("verify wrong", authhost.verify_password(hashed, "password"), False)
    return "primary"
