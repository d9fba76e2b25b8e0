from mgs.cli import main

raise SystemExit(main())
