from mpihybrid.cli import main

raise SystemExit(main())
