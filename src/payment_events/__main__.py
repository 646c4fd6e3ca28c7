"""`python -m payment_events` runs the command-line interface."""

from __future__ import annotations

from payment_events.cli import main

if __name__ == "__main__":
    main()
