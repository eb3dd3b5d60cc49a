this is not lua at all (
