"""Activities: every side effect of a signal's execution (database, broker, numpy)."""
