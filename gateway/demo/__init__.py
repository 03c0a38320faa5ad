"""``make demo`` in one place: the runner (:mod:`gateway.demo.run`, ``python -m gateway.demo``)
starts the services and the reference peers and tells each step; :mod:`gateway.demo.cbsb` and
:mod:`gateway.demo.thread` are its two bootstrapping parts. It sits above the services and the
peers, the only code besides the tests that imports both."""
