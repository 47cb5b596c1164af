import sys

from facesim.tuning.cli import main

sys.exit(main())
