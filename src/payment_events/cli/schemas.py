"""`schemas export` and `schemas check`."""

from __future__ import annotations

import click

from payment_events.cli.base import (
    EXIT_FAILURE,
    cli,
    emit_json,
)

# -- schemas --------------------------------------------------------------------------------------


@cli.group("schemas")
def schemas_group() -> None:
    """JSON Schema files of every event version, and the compatibility check."""


@schemas_group.command("export")
@click.argument("directory", default="schemas", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
def schemas_export(directory: str, as_json: bool) -> None:
    """Write <DIRECTORY>/<EventType>/v<N>.json for every registered event version (default: schemas)."""
    from payment_events.events.schemas import export_schemas

    written = [str(p) for p in export_schemas(directory)]
    if as_json:
        emit_json(written)
    else:
        for path in written:
            click.echo(path)
        click.echo(f"{len(written)} schema file(s) written to {directory}", err=True)


@schemas_group.command("check")
@click.option(
    "--dir",
    "directory",
    default="schemas",
    type=click.Path(file_okay=False),
    show_default=True,
    help="Committed schema files to compare with the models.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@click.pass_context
def schemas_check(ctx: click.Context, /, directory: str, as_json: bool) -> None:
    """Fail (exit 1) on a breaking change between versions, or committed files out of date with the models.

    Checks every consecutive pair of versions (removed or retyped fields, new required fields, narrowed
    enums, ...), that each committed file matches its model, and how a changed file would break consumers.
    """
    from pathlib import Path

    from payment_events.events.schemas import (
        check_all,
        check_compatibility,
        generate_schemas,
        load_schemas,
        stale_schema_files,
    )

    def problem(schema: str, path: str, kind: str, message: str) -> dict[str, str]:
        return {"schema": schema, "path": path, "kind": kind, "message": message}

    problems = [problem(i.schema, i.path, i.kind, i.message) for i in check_all()]
    if Path(directory).is_dir():
        problems += [problem("", "", "stale-file", m) for m in stale_schema_files(directory)]
        committed = load_schemas(directory)
        for key, schema in sorted(generate_schemas().items()):
            if key in committed and committed[key] != schema:
                problems += [
                    problem(i.schema, i.path, f"changed-published-{i.kind}", i.message)
                    for i in check_compatibility(committed[key], schema)
                ]
    else:
        message = f"{directory} is not a directory: run `payment-events schemas export` and commit the files"
        problems.append(problem("", "", "missing-dir", message))
    if as_json:
        emit_json({"ok": not problems, "problems": problems})
    elif problems:
        for found in problems:
            prefix = f"{found['schema']}: " if found["schema"] else ""
            click.echo(f"{found['kind']}: {prefix}{found['message']}")
    else:
        click.echo("schemas are compatible and up to date")
    if problems:
        ctx.exit(EXIT_FAILURE)
