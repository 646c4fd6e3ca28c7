"""``python -m bench.privacy_rates``: the two privacy rates of docs/privacy.md, measured.

* **misses** over the adversarial corpus (bench/privacy_corpus.py): a card number the detector does not
  find, that log redaction leaves readable, or that an event accepts or echoes in an error, when put in
  any string field of any registered event model (built directly and decoded from JSON);
* **false refusals** over realistic honest ids: ids that ``privacy.check_text`` (what every event field
  goes through) refuses. Ids whose digits, bare or behind a ``pay_``-style prefix, are themselves a card
  number (range, length and Luhn) are refused by design and counted apart, per format.

Options: ``--ids N`` (default 3,000,000), ``--cards-per-brand K`` for the per-field probe (default 1:
every brand and every written form in every field; ``0`` means all test cards), ``--seed``,
``--no-field-probes`` (skip the slow per-field probes: detector, redaction and ids only).
No servers needed. Prints a report (and ``--json`` prints it as JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from typing import Any

from bench.privacy_corpus import (
    HONEST_FORMATS,
    adversarial_texts,
    honest_ids,
    is_bare_card_id,
    probe,
    probed_models,
    string_paths,
    wire_example,
)
from payment_events.errors import SensitiveDataError
from payment_events.events.card_numbers import contains_card_number, normalise
from payment_events.events.privacy import check_text
from payment_events.ops.logs import redact_text


def _digits_only(text: str) -> str:
    return "".join(char for char in normalise(text) if char in "0123456789")


def measure_corpus(cards_per_brand: int, field_probes: bool = True) -> dict[str, Any]:
    """Misses of the detector, of log redaction, and of every event field, over the corpus."""
    texts = list(adversarial_texts())
    detector_misses = [t for t in texts if not contains_card_number(t.text)]
    redaction_misses = []
    for item in texts:
        redacted = redact_text(item.text)
        if contains_card_number(redacted) or item.card in _digits_only(redacted):
            redaction_misses.append(item)
    chosen_cards: dict[str, list[str]] = {}
    for item in texts:
        cards = chosen_cards.setdefault(item.brand, [])
        if item.card not in cards and (cards_per_brand == 0 or len(cards) < cards_per_brand):
            cards.append(item.card)
    field_texts = [t for t in texts if t.card in chosen_cards[t.brand]]
    probes = accepted = echoed = not_as_card = 0
    fields = 0
    examples: list[str] = []
    for model in probed_models() if field_probes else []:
        for path in string_paths(wire_example(model)):
            fields += 1
            for item in field_texts:
                outcome = probe(model, path, item.text, item.card)
                probes += 1
                accepted += outcome.accepted
                echoed += outcome.echoed
                not_as_card += not outcome.sensitive
                if (outcome.accepted or outcome.echoed) and len(examples) < 10:
                    examples.append(f"{model.__name__}.{'.'.join(path)} <- {item.form}")
    return {
        "corpus_texts": len(texts),
        "detector_misses": len(detector_misses),
        "detector_miss_examples": [t.form for t in detector_misses[:10]],
        "redaction_misses": len(redaction_misses),
        "field_probes": probes,
        "fields": fields,
        "models": len(probed_models()),
        "field_texts": len(field_texts),
        "field_accepted": accepted,
        "field_echoed": echoed,
        "field_refused_not_as_card": not_as_card,
        "field_miss_examples": examples,
    }


def measure_ids(count: int, seed: int) -> dict[str, Any]:
    """False refusals per honest id format; bare numeric ids that are card numbers counted apart."""
    total: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    by_design: Counter[str] = Counter()
    examples: list[str] = []
    for name, value in honest_ids(count, seed):
        total[name] += 1
        try:
            check_text("paymentId", value)
        except SensitiveDataError:
            if is_bare_card_id(value):
                by_design[name] += 1
            else:
                refused[name] += 1
                if len(examples) < 10:
                    examples.append(f"{name}: {value}")
    false_refusals = sum(refused.values())
    honest = count - sum(by_design.values())
    return {
        "ids": count,
        "seed": seed,
        "false_refusals": false_refusals,
        "honest_ids": honest,
        "false_refusal_rate": false_refusals / honest if honest else 0.0,
        # With zero events in n trials the 95% upper bound on the rate is about 3/n (rule of three).
        "upper_bound_95": (3 / honest if false_refusals == 0 else _upper(false_refusals, honest)),
        "refused_by_design_bare_card_ids": sum(by_design.values()),
        "per_format": {
            name: {"ids": total[name], "false_refusals": refused[name], "by_design": by_design[name]}
            for name in HONEST_FORMATS
        },
        "examples": examples,
    }


def _upper(events: int, trials: int) -> float:
    rate = events / trials
    return rate + 1.96 * math.sqrt(rate * (1 - rate) / trials)


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print the report; exit 1 if a bound is not met."""
    parser = argparse.ArgumentParser(prog="python -m bench.privacy_rates", description=__doc__)
    parser.add_argument("--ids", type=int, default=3_000_000)
    parser.add_argument("--cards-per-brand", type=int, default=1)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--no-field-probes", action="store_true", help="skip the (slow) put-in-every-field probes"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    corpus = measure_corpus(args.cards_per_brand, field_probes=not args.no_field_probes)
    ids = measure_ids(args.ids, args.seed)
    report = {"corpus": corpus, "ids": ids, "seconds": round(time.monotonic() - started, 1)}
    misses = sum(
        corpus[name] for name in ("detector_misses", "redaction_misses", "field_accepted", "field_echoed")
    )
    ok = misses == 0 and ids["false_refusal_rate"] <= 1e-6
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0 if ok else 1


def _print(report: dict[str, Any]) -> None:
    corpus, ids = report["corpus"], report["ids"]
    lines = [
        f"adversarial corpus: {corpus['corpus_texts']:,} texts",
        f"  detector misses:  {corpus['detector_misses']}",
        f"  redaction misses: {corpus['redaction_misses']}",
        f"  event fields: {corpus['field_texts']:,} texts x {corpus['fields']} string fields of "
        f"{corpus['models']} models = {corpus['field_probes']:,} probes (built and decoded)",
        f"    accepted: {corpus['field_accepted']}  echoed in an error: {corpus['field_echoed']}  "
        f"refused as invalid but not as card data: {corpus['field_refused_not_as_card']}",
        f"honest ids: {ids['ids']:,} (seed {ids['seed']})",
        f"  false refusals: {ids['false_refusals']} of {ids['honest_ids']:,} "
        f"(rate {ids['false_refusal_rate']:.2e}, 95% upper bound {ids['upper_bound_95']:.2e})",
        "  ids whose digits are a card number (bare or behind a prefix), refused by design: "
        f"{ids['refused_by_design_bare_card_ids']:,}",
    ]
    for name, row in ids["per_format"].items():
        lines.append(
            f"    {name:<40} {row['ids']:>9,} ids  {row['false_refusals']:>3} false  "
            f"{row['by_design']:>6,} by design"
        )
    lines.extend(f"  example: {example}" for example in ids["examples"] + corpus["field_miss_examples"])
    lines.append(f"took {report['seconds']} s")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
