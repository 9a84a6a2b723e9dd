"""Pure decisions: no Flask, requests or SQLite; plain data in, plain data out."""
