"""Border routing, sans-IO: the OMR and on-link prefixes, the route published for the LAN and
the Router Advertisements on it (:mod:`gateway.thread.border.routing`)."""
