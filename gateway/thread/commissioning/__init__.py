"""The Thread commissioning parties (sans-IO): leader, joiner router, border agent, the native
and external commissioners, the joiner, MLE discovery and the ``_meshcop._udp`` record."""
