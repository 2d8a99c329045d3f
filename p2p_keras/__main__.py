from p2p_keras.cli import main

raise SystemExit(main())
