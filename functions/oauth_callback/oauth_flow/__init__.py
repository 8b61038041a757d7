"""OAuth authorization-code flow of a connection: start (authorize) and finish (callback)."""
