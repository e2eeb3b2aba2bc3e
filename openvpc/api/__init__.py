"""The EC2 Query API: wire format and auth only."""
