"""SQLite: connections, leased queues, and one module per kind of fact stored."""
