import sys

from facesim.pipeline.cli import main

sys.exit(main())
