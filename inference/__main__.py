import sys

from inference.cli import serve_main

sys.exit(serve_main())
