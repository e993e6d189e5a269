from billion.cli import main

raise SystemExit(main())
