"""The helper package `ids` of py_pkg_login.py (installed as ids/__init__.py)."""
