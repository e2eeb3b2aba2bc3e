"""The EC2 Query API package: the wire format and authentication only (no business rules)."""
