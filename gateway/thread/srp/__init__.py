"""SRP (RFC 9665) as Thread uses it: the sans-IO server core and a signing client builder."""
