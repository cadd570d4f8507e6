"""Developer tools run by the Makefile (tools/lock.py: `make lock`)."""
