"""What the command lines share (gwctl, the services' and the peers' ``python -m`` entry points):
output conventions (:mod:`gateway.cli.output`) and click helpers, exit codes and typed-error
reporting (:mod:`gateway.cli.common`). Neutral: it imports no service and no peer."""
