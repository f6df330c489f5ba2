"""Shell completion: ``aq completion bash|zsh|fish`` prints a script; the script asks the hidden
``aq __complete CWORD WORDS...`` for candidates.

The answer is read from the argument parser itself (subcommands, options, choices), so a new command
completes without touching this module. A positional or option whose metavar is ``JOB`` completes the
queue's job ids (a listing of its folders: no git, no plugins loaded), ``ENGINE`` or ``--engine`` the
installed engines, ``FILE``/``PATH`` files and ``DIR`` directories (listed by the shell). The first line
of the answer is its kind (``words``, ``files``, ``dirs``); each further line is ``value`` or
``value<TAB>description``.
"""

from __future__ import annotations

import argparse
import sys

SHELLS = ("bash", "zsh", "fish")
# Commands that act only on jobs in some states complete only those (others: every job).
JOB_STATES = {"retry": ("failed",), "cancel": ("inbox", "building")}

BASH = r"""# aq completion for bash. Load it with: eval "$(aq completion bash)"  (e.g. in ~/.bashrc)
_aq_complete() {
    local cur="${COMP_WORDS[COMP_CWORD]}" line
    local -a lines
    COMPREPLY=()
    mapfile -t lines < <("${COMP_WORDS[0]}" __complete "$COMP_CWORD" "${COMP_WORDS[@]}" 2>/dev/null)
    [ "${#lines[@]}" -gt 0 ] || return 0
    [ "$cur" = "=" ] && cur=""
    case "${lines[0]}" in
        files) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
        dirs) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
        *) for line in "${lines[@]:1}"; do COMPREPLY+=("${line%%$'\t'*}"); done ;;
    esac
}
complete -F _aq_complete aq
"""

ZSH = r"""#compdef aq
# aq completion for zsh. Load it with: source <(aq completion zsh)  (after compinit, e.g. in ~/.zshrc)
_aq() {
    local -a lines described
    local line
    lines=("${(@f)$("${words[1]}" __complete $((CURRENT - 1)) "${words[@]}" 2>/dev/null)}")
    case "${lines[1]}" in
        files) _files ;;
        dirs) _files -/ ;;
        words)
            for line in "${(@)lines[2,-1]}"; do
                [[ -z "$line" ]] && continue
                if [[ "$line" == *$'\t'* ]]; then
                    described+=("${${line%%$'\t'*}//:/\\:}:${line#*$'\t'}")
                else
                    described+=("${line//:/\\:}")
                fi
            done
            (( ${#described} )) && _describe -t values 'aq' described ;;
    esac
}
if [[ "${funcstack[1]}" == "_aq" ]]; then
    _aq "$@"
else
    compdef _aq aq
fi
"""

FISH = r"""# aq completion for fish. Load it with: aq completion fish | source  (or save it in ~/.config/fish/completions/aq.fish)
function __aq_complete
    set -l tokens (commandline -opc)
    set -l current (commandline -ct)
    set -l out ($tokens[1] __complete (count $tokens) $tokens $current 2>/dev/null)
    test (count $out) -gt 0; or return
    switch $out[1]
        case files
            __fish_complete_path $current
        case dirs
            __fish_complete_directories $current
        case '*'
            test (count $out) -gt 1; and printf '%s\n' $out[2..-1]
    end
end
complete -c aq -f -a '(__aq_complete)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``aq completion SHELL`` and the hidden ``aq __complete`` to the command line."""
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh, fish)")
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(func=cmd_completion)
    p = sub.add_parser("__complete")  # no help=: not listed in aq --help
    p.add_argument("cword", type=int)
    p.add_argument("words", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_complete)


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(SCRIPTS[args.shell])
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    from aq_core.cli import build_parser  # here, not at the top: cli imports this module

    try:
        kind, items = complete(build_parser(), args.words, args.cword)
    except Exception:  # a completion must never print a traceback into the user's prompt
        kind, items = "words", []
    sys.stdout.write("\n".join([kind, *items]) + "\n")
    return 0


# -- what to offer -------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def complete(parser: argparse.ArgumentParser, words: list[str], cword: int) -> tuple[str, list[str]]:
    """Return (kind, candidates) for word ``cword`` of ``words`` (``words[0]`` is the program)."""
    current = words[cword] if cword < len(words) else ""
    tokens = words[1:cword]
    if current == "=":  # bash splits --opt=value at the '='
        tokens, current = [*tokens, "="], ""
    state = {"root": None, "store": None}
    commands: list[str] = []
    positional = 0
    expect: argparse.Action | None = None
    for token in tokens:
        if expect is not None:
            if token == "=":
                continue
            if expect.dest in state and not commands:
                state[expect.dest] = token
            expect = None
            continue
        if token.startswith("-") and token != "-":
            name, eq, value = token.partition("=")
            action = parser._option_string_actions.get(name)
            if action is not None and _takes_value(action):
                if eq and action.dest in state and not commands:
                    state[action.dest] = value
                elif not eq:
                    expect = action
            continue
        sub = _subcommands(parser)
        if sub is not None and token in sub.choices:
            parser = sub.choices[token]
            commands.append(token)
            positional = 0
            continue
        positional += 1
    if expect is not None:
        return _values(expect, current, commands, state)
    if current.startswith("-"):
        return "words", _options(parser, current)
    sub = _subcommands(parser)
    if sub is not None:
        helps = {a.dest: a.help or "" for a in sub._choices_actions}
        names = [n for n in sub.choices if not n.startswith("_") and n.startswith(current)]
        return "words", [f"{n}\t{helps[n]}" if helps.get(n) else n for n in names]
    action = _positional(parser, positional)
    if action is None:
        return "words", []
    return _values(action, current, commands, state)


def _options(parser: argparse.ArgumentParser, current: str) -> list[str]:
    found = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        for option in action.option_strings:
            if option.startswith("--") and option.startswith(current):
                found.append(f"{option}\t{action.help}" if action.help else option)
    return found


def _positional(parser: argparse.ArgumentParser, index: int) -> argparse.Action | None:
    """Return the positional that word number ``index`` (after the command) belongs to."""
    positionals = [a for a in parser._actions if not a.option_strings]
    for action in positionals:
        if action.nargs in ("+", "*", argparse.REMAINDER):
            return action
        count = 1 if action.nargs in (None, "?") else int(action.nargs)
        if index < count:
            return action
        index -= count
    return None


def _values(
    action: argparse.Action, current: str, commands: list[str], state: dict[str, str | None]
) -> tuple[str, list[str]]:
    """Return the candidates for a value of ``action`` (an option's argument or a positional)."""
    if action.choices:
        return "words", [str(c) for c in action.choices if str(c).startswith(current)]
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if metavar == "JOB" or action.dest == "job":
        states = JOB_STATES.get(commands[0] if commands else "")
        return "words", [f"{i}\t{s}" for i, s in _job_ids(state, states) if i.startswith(current)]
    if metavar == "ENGINE" or action.dest == "engine":
        return "words", [n for n in _engine_names() if n.startswith(current)]
    if metavar == "DIR":
        return "dirs", []
    if metavar in ("FILE", "PATH"):
        return "files", []
    return "words", []


def _job_ids(state: dict[str, str | None], states: tuple[str, ...] | None) -> list[tuple[str, str]]:
    """Return (id, state) of the queue's jobs, in the states given (every state when None)."""
    from aq_core.store import State
    from aq_core.store_open import open_store

    store = open_store(state["root"], create=False, url=state["store"])
    wanted = [State(s) for s in states] if states else [None]
    return sorted((e.id, e.state.value) for st in wanted for e in store.scan(st))


def _engine_names() -> list[str]:
    from aq_core import plugins

    return plugins.engine_names()
