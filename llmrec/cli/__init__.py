"""The ``llmrec`` command line: one typer app, one module per command group, each command a thin call into the
library.

Commands that report figures take ``--json`` and then print one JSON object as the last line of stdout;
progress and logs go to stderr. A user-fixable error exits 1 with one line on stderr, never a traceback; a usage
error (a missing option, an unknown command or flag) exits 2. Heavy libraries are imported inside the commands, so
``llmrec --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from llmrec.cli import agent, batch, data, demo, encoder, llm, models, profiles, rl
from llmrec.errors import LlmrecError

INTERRUPTED = 130  # the shell's exit code for a process stopped by SIGINT

app = typer.Typer(
    help="llmrec: LLM-augmented sequential recommendation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(encoder.app, name="encoder")
app.add_typer(profiles.app, name="profiles")
app.command("eval")(llm.eval_run)
app.command("sft")(llm.sft)
app.command("rl")(rl.rl)
app.command("recommend")(llm.recommend_command)
app.command("batch")(batch.batch)
app.command("chat")(agent.chat)
app.command("serve")(agent.serve)
app.command("demo")(demo.demo)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app on ``argv`` (the process's arguments when None); a user-fixable error becomes one
    line on stderr and a non-zero exit code.

    Usage errors (a missing option, an unknown command or flag) exit 2, errors in the work itself exit 1, an
    interrupt (Ctrl-C) 130.
    """
    from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer vendors click

    try:
        code = app(args=argv, prog_name="llmrec", standalone_mode=False)
    except NoArgsIsHelpError:
        sys.exit(2)  # the help text has been printed
    except UsageError as err:
        command = err.ctx.command_path if err.ctx else "llmrec"
        print(f"llmrec: error: {command}: {err.format_message()} (see `{command} --help`)", file=sys.stderr)
        sys.exit(2)
    except LlmrecError as err:
        print(f"llmrec: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # typer turns one inside a command into exit code 130; this is one outside
        code = INTERRUPTED
    if code == INTERRUPTED:
        print("llmrec: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
