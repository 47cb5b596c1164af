import sys

from facesim.benchmarks.cli import main

sys.exit(main())
