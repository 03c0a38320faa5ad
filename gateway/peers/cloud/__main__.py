from gateway.peers.cloud.cli import main

raise SystemExit(main())
