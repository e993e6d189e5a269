"""The one shared mutable thing: a SQLite store of battles, votes, benchmark results and training runs."""
