import sys

from conveyor_client.cli import main

sys.exit(main())
