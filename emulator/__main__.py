import sys

from facesim.emulator.cli import main

sys.exit(main())
