"""`python -m hashstream` runs the command-line interface."""

from hashstream.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
