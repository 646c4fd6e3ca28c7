"""Entry point of one relay process in the chaos suite: ``python -m tests.chaos.relay_main URL BOOTSTRAP
CONFIG_JSON``. It runs the real relay (:func:`payment_events.service.run_relay`) with the given
:class:`~payment_events.relay.settings.RelayConfig` options until SIGTERM; the suite SIGKILLs it at will."""

from __future__ import annotations

import json
import logging
import sys

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class _ExtrasFormatter(logging.Formatter):
    """Plain text plus the structured ``extra`` fields the relay logs (event, code, error, counts)."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        text = super().format(record)
        return f"{text} {json.dumps(extras, default=str)}" if extras else text


def main(argv: list[str]) -> int:
    """Run a relay until stopped; 0 after a graceful stop."""
    from payment_events.relay.settings import RelayConfig
    from payment_events.service import run_relay

    database_url, bootstrap, options = argv[0], argv[1], json.loads(argv[2])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ExtrasFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    run_relay(database_url, bootstrap, RelayConfig(**options))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
