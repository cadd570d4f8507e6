"""Parameter importance estimators (SI path integral) and their on-disk store."""
