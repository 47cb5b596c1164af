import sys

from facesim.cli import main

sys.exit(main())
