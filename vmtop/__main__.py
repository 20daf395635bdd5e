from vmtop.cli import main

raise SystemExit(main())
