"""A Sphinx directive that documents a click command group from the commands themselves.

``retention-cli`` walks a click group (default ``flask_retention.cli:retention_cli``)
and renders, for every visible command, a section with its help text, usage
line, arguments and options, as ``--help`` would show them. The reference can
therefore never drift from the code. In MyST Markdown::

    ```{retention-cli}
    :prog: flask retention
    ```
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

import click
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

DEFAULT_GROUP = "flask_retention.cli:retention_cli"


def load_command(spec: str) -> click.Command:
    """The click command named by ``module:attribute``."""
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"{spec!r}: give the command as module:attribute")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{spec!r} is not a click command")
    return command


def help_paragraphs(text: str) -> list[nodes.Node]:
    """Click help text as paragraphs; a ``\\b`` paragraph keeps its line breaks."""
    result: list[nodes.Node] = []
    for block in inspect.cleandoc(text).split("\n\n"):
        block = block.strip("\n")
        if not block.strip():
            continue
        if block.startswith("\b"):
            literal = block[1:].strip("\n")
            result.append(nodes.literal_block(literal, literal))
        else:
            result.append(nodes.paragraph("", " ".join(block.split())))
    return result


def visible_commands(ctx: click.Context) -> list[tuple[str, click.Command]]:
    """The visible subcommands of a group context, sorted by name."""
    command = ctx.command
    if not isinstance(command, click.Group):
        return []
    found = []
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            found.append((name, sub))
    return found


def source_files(ctx: click.Context) -> set[str]:
    """The files that define the group's and its commands' callbacks."""
    files: set[str] = set()
    commands = [ctx.command]
    while commands:
        command = commands.pop()
        callback = inspect.unwrap(command.callback) if command.callback else None
        try:
            if callback is not None:
                files.add(inspect.getfile(callback))
        except TypeError:
            pass
        if isinstance(command, click.Group):
            commands.extend(command.commands.values())
    return files


def params_list(ctx: click.Context) -> tuple[list[click.Argument], list[tuple[str, str]]]:
    """Arguments, and ``(option strings, help)`` records as ``--help`` prints them.

    ``--help`` itself is left out: every command has it.
    """
    arguments = [p for p in ctx.command.params if isinstance(p, click.Argument)]
    options = []
    help_option = ctx.command.get_help_option(ctx)
    for param in ctx.command.get_params(ctx):
        if isinstance(param, click.Option) and not param.hidden and param is not help_option:
            record = param.get_help_record(ctx)
            if record is not None:
                options.append(record)
    return arguments, options


class RetentionCLI(SphinxDirective):
    """Render a click group and all its commands as sections."""

    has_content = False
    optional_arguments = 1
    option_spec = {  # noqa: RUF012 (docutils' own class attribute)
        "prog": directives.unchanged_required,
    }

    def run(self) -> list[nodes.Node]:
        spec = self.arguments[0] if self.arguments else DEFAULT_GROUP
        try:
            group = load_command(spec)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise self.error(f"retention-cli: cannot load {spec!r}: {exc}") from None
        prog = self.options.get("prog", "flask " + (group.name or "retention"))
        ctx = click.Context(group, info_name=prog)
        # Re-read this page whenever a module defining the commands changes.
        module = sys.modules[spec.partition(":")[0]]
        for path in source_files(ctx) | {str(module.__file__)}:
            self.env.note_dependency(path)
        result: list[nodes.Node] = [*help_paragraphs(group.help or "")]
        result.extend(self._body(ctx, with_help=False))
        result.extend(self._commands(ctx))
        return result

    def _commands(self, ctx: click.Context) -> list[nodes.Node]:
        sections: list[nodes.Node] = []
        for name, command in visible_commands(ctx):
            sub = click.Context(command, info_name=name, parent=ctx)
            path = sub.command_path
            section = nodes.section(ids=[nodes.make_id("cli " + path)], names=[path])
            section += nodes.title("", "", nodes.literal(path, path))
            section.extend(self._body(sub, with_help=True))
            section.extend(self._commands(sub))
            self.state.document.note_implicit_target(section, section)
            sections.append(section)
        return sections

    def _body(self, ctx: click.Context, *, with_help: bool) -> list[nodes.Node]:
        command = ctx.command
        body: list[nodes.Node] = []
        if with_help:
            body.extend(help_paragraphs(command.help or command.short_help or ""))
        usage = f"{ctx.command_path} {' '.join(command.collect_usage_pieces(ctx))}".rstrip()
        body.append(nodes.literal_block(usage, usage, language="text"))
        arguments, options = params_list(ctx)
        if arguments:
            body.append(nodes.rubric("", "Arguments"))
            items = nodes.bullet_list()
            for argument in arguments:
                shown = _metavar(argument, ctx)
                text = "required" if argument.required else "optional"
                if argument.nargs == -1:
                    text += ", any number"
                items += nodes.list_item(
                    "",
                    nodes.paragraph("", "", nodes.literal(shown, shown), nodes.Text(f" ({text})")),
                )
            body.append(items)
        if options:
            body.append(nodes.rubric("", "Options"))
            table = nodes.definition_list()
            for opts, help_text in options:
                term = nodes.term("", "", nodes.literal(opts, opts))
                definition = nodes.definition("", nodes.paragraph("", help_text or ""))
                table += nodes.definition_list_item("", term, definition)
            body.append(table)
        return body


def _metavar(param: click.Parameter, ctx: click.Context) -> str:
    """The parameter's metavar; ``make_metavar`` takes the context from click 8.2 on."""
    make: Any = param.make_metavar
    if "ctx" in inspect.signature(make).parameters:
        return str(make(ctx))
    return str(make())


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the ``retention-cli`` directive."""
    app.add_directive("retention-cli", RetentionCLI)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
