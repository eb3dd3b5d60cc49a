import no_such_module_for_authhost_tests  # noqa: F401
