import sys

from facesim.inference.cli import serve_main

sys.exit(serve_main())
