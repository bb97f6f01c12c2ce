"""Entry script of the frozen build: the same `lectern` command the pip-installed package gives."""
import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
