"""`python -m app.cli`: the same as the `lxa` command."""

from app.cli import main

main()
