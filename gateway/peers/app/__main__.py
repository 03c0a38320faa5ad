from gateway.peers.app.cli import main

raise SystemExit(main())
