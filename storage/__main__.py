import sys

from facesim.storage.cli import main

sys.exit(main())
