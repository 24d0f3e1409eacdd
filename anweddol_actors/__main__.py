from anweddol_actors.cli import main

raise SystemExit(main())
