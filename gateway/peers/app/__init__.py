"""The user's app as a command line: claims a gateway, starts bootstrapping sessions (targeted from
a thing's QR code, or discover with confirmation), listens for the result on the LAN and from the
cloud, binds the things, and says what happened in plain words.
``python -m gateway.peers.app --help``."""
