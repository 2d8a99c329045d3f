from p2p_keras.jobs.cli import main

raise SystemExit(main())
