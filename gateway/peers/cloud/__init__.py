"""The reference cloud server of cloud-based bootstrapping (CBSB): device registry with per-device
factory secrets, gateway registration with mutual authentication, user accounts, bootstrapping
sessions, scoped PSK derivation, binding. ``python -m gateway.peers.cloud --help``."""
