"""credential_store: orgs, members, connections and their write-only credentials."""
