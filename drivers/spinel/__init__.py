"""An OpenThread radio co-processor (RCP) as a radio: Spinel over HDLC-lite on a serial line
(``spinel+hdlc+uart://``) or on the pty of a simulated RCP process (``spinel+hdlc+forkpty://``).

Layers, bottom up: :mod:`.hdlc` (framing, sans-IO), :mod:`.codec` (Spinel frames and data types,
sans-IO), :mod:`.consts` (numbers from OpenThread's ``spinel.h``), :mod:`.rcp` (what the values
of the RCP's properties mean, sans-IO), :mod:`.link` (the byte stream: pyserial or a pty, on the
event loop) and :mod:`.backend` (the :class:`~drivers.radio.Radio`). See docs/radio-rcp.md.
"""
