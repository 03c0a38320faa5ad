"""The sans-IO Thread network core: MLE attach and child maintenance, the Leader's partition
and Network Data, sleepy children, MLE/MAC security state, and IPv6 on the mesh at the datagram
level (docs/thread-network.md). No asyncio, no sockets: bytes and time in, frames and events
out. :class:`~gateway.thread.network.router.RouterCore` is the gateway's side (Leader, Router,
parent); :class:`~gateway.thread.network.child.ChildCore` is the MTD child the reference things
run."""
