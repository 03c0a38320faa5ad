"""The reference thing: a device on its own emulated AT86RF233 radio that bootstraps through the
gateway, either with CBSB (cloud-based, ``cbsb``) or as a Thread joiner (``join``)."""
